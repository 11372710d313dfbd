"""A real Docker Engine for the deploy tests and the deploy benchmark: local registries and
small images, nothing fetched from the internet.

What is real: the engine (`dockerd`, Debian trixie's `docker.io` 26.1), the Compose v2 plugin
(`docker-compose` 2.26), two registries (Debian's `docker-registry`) on 127.0.0.1, one open
and one behind htpasswd for the deploy's `login` frame, and images made with `docker import`
from busybox-static: each one serves `/`, `/health` and `/cgi-bin/slow` (answers after a second)
with busybox `httpd` on `$PORT`, logging each request, and
exits at once on SIGTERM (its shell traps it), as a well-behaved service does.

Image variants, each a different image (so a tag that points at one is a different release):
- `healthy`: answers on `/` and `/health`;
- `unhealthy`: runs, never answers (a release whose health check fails);
- `crash`: exits 1 at once (a crash loop under `restart: unless-stopped`);
- `slow-<s>`: answers after <s> seconds (a release that holds the lock for a while, or stays
  "starting" past the health wait);
- `bare-<port>`: answers `bare` on `/` and `/health` on <port>, from an image with no HTTP
  client and no shell: its one binary is named `server`, linked only as `httpd`, which the image
  runs directly (no `sh`, `wget`, `curl`, `node`, nor `busybox` to call one through).

`/usr/bin/docker` is named explicitly: a static client elsewhere on PATH (`/usr/local/bin`
here) may be another version than the packaged engine and plugin. `.ci/run` installs all of
this and starts `dockerd`; without it the tests skip saying why, and fail under CI=true.
Every call is bounded in time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

DOCKER = "/usr/bin/docker"
COMPOSE_PLUGIN = "/usr/libexec/docker/cli-plugins/docker-compose"
REGISTRY = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"
SOCKET = "/var/run/docker.sock"
TIMEOUT = 120
"""No docker call of the harness takes longer (an import, a push, a pull of a few MB)."""

SERVE = """#!/bin/sh
# A test service: busybox httpd on $PORT, serving /www; exits at once on SIGTERM.
trap 'exit 0' TERM INT
mode=$(cat /mode)
case "$mode" in
  crash) echo "crashing on purpose" >&2; exit 1 ;;
  slow-*) sleep "${mode#slow-}" & wait $! ;;
esac
mkdir -p /www/cgi-bin
if [ "$mode" != unhealthy ]; then
  echo "$mode" > /www/index.html
  echo ok > /www/health
  cat > /www/cgi-bin/slow <<'CGI'
#!/bin/sh
sleep 1
echo "Content-Type: text/plain"
echo
cat /mode
CGI
  chmod 755 /www/cgi-bin/slow
fi
# -v: each request in the container's log (`docker logs`), so a test can tell who was asked.
httpd -f -v -p "${PORT:-8080}" -h /www &
wait $!
"""
VARIANTS = ("healthy", "unhealthy", "crash")
"""Built once per session; `slow-<s>` variants are built when first asked for."""
APPLETS = ("sh", "httpd", "wget", "sleep", "cat", "rm", "mkdir", "echo", "kill", "ls", "true", "chmod", "nslookup")
BARE = "bare-"


def missing_prerequisites() -> list[str]:
    """What this machine lacks for the real-engine tests, as messages naming the Debian package."""
    problems = []
    for path, package in (
        (DOCKER, "docker-cli (Debian trixie)"),
        (COMPOSE_PLUGIN, "docker-compose (Debian trixie: Compose v2)"),
        (REGISTRY, "docker-registry"),
        (BUSYBOX, "busybox-static"),
    ):
        if not Path(path).exists():
            problems.append(f"{path} not installed (Debian package {package}; .ci/run installs it)")
    if Path(BUSYBOX).exists() and b"ld-linux" in Path(BUSYBOX).read_bytes()[:8192]:
        problems.append(f"{BUSYBOX} is dynamically linked: install busybox-static, the images hold only it")
    if not problems:
        probe = subprocess.run(
            [DOCKER, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            problems.append(f"no Docker engine answers on {SOCKET} (.ci/run starts dockerd): {probe.stderr.strip()}")
    return problems


def docker(*args: str, input: str | None = None, config: Path | None = None, timeout: int = TIMEOUT) -> str:
    """Run the packaged docker client as root; raises with its output when it fails."""
    argv = [DOCKER, *(["--config", str(config)] if config else []), *args]
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Every:
    """Calls `action` every `interval` seconds in a background thread while the `with` block
    runs (a sampler, a prober); bounded: the thread is joined on exit."""

    def __init__(self, interval: float, action) -> None:
        self.interval = interval
        self.action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.action()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def terminate(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """Stop a server the harness started: SIGTERM, then SIGKILL if it lingers."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line (the registry takes bcrypt only), with the C library's bcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated, still in 3.11 and 3.12; the registry wants bcrypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324 - bcrypt
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("the C library has no bcrypt for the registry's htpasswd file")
    return f"{user}:{hashed}\n"


class Registry:
    """`docker-registry serve` on 127.0.0.1 at a free port, its storage in a temporary
    directory, deletes enabled (for the retention clean-up tests); with `user` and `password`
    it answers only to them (htpasswd)."""

    def __init__(self, base: Path, name: str, user: str | None = None, password: str | None = None) -> None:
        self.directory = base / name
        self.directory.mkdir(parents=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.user, self.password = user, password
        self.process: subprocess.Popen | None = None
        self.admin_config: Path | None = None

    def start(self) -> Registry:
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if self.user:
            htpasswd = self.directory / "htpasswd"
            htpasswd.write_text(bcrypt_line(self.user, self.password or ""))
            config["auth"] = {"htpasswd": {"realm": "dreamscape-test", "path": str(htpasswd)}}
        (self.directory / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        with open(self.directory / "registry.log", "ab") as log:
            self.process = subprocess.Popen(
                [REGISTRY, "serve", str(self.directory / "config.yml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.directory / 'registry.log').read_text()}")
            if self._answers():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer on {self.host} within 15 s")
            time.sleep(0.05)
        if self.user:
            # The harness's own pushes log in with a config directory of its own.
            self.admin_config = self.directory / "admin-docker-config"
            self.admin_config.mkdir(mode=0o700)
            docker(
                "login", "--username", self.user, "--password-stdin", self.host,
                input=(self.password or "") + "\n", config=self.admin_config,
            )  # fmt: skip
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                return True
        except urllib.error.HTTPError as error:
            return error.code == 401
        except OSError:
            return False

    def stop(self) -> None:
        terminate(self.process)

    def image(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def delete(self, reference: str) -> None:
        """Remove a tag's manifest from the registry, as a retention clean-up does."""
        repository, tag = reference.removeprefix(self.host + "/").rsplit(":", 1)
        headers = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        digest = self._request("HEAD", f"/v2/{repository}/manifests/{tag}", headers).headers["Docker-Content-Digest"]
        self._request("DELETE", f"/v2/{repository}/manifests/{digest}", headers)

    def _request(self, method: str, path: str, headers: dict[str, str]):
        request = urllib.request.Request(f"http://{self.host}{path}", method=method, headers=headers)
        if self.user:
            credentials = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {credentials}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
            return response


@dataclass(frozen=True)
class Variant:
    name: str
    engine: str
    """The engine's own tag: each test process (pytest-xdist worker) builds and removes its own."""

    @property
    def local(self) -> str:
        """The image's local name, from which every published tag is made."""
        return f"dreamscape-test/{self.name}:{self.engine}"


class Engine:
    """The registries and the image variants, made once for a test session or a benchmark."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="dreamscape-engine-"))
        self.tag = "engine-" + secrets.token_hex(4)
        """The tag of this engine's local images: another process's engine leaves them alone."""
        self.registry = Registry(self.base, "open")
        self.auth_registry = Registry(self.base, "auth", user="dreamscape-ci", password="ghs_" + secrets.token_hex(20))
        self._built: set[str] = set()
        self._published: dict[str, str] = {}
        """reference -> variant it holds in its registry: a push of the same again is skipped."""

    def start(self) -> Engine:
        try:
            self.registry.start()
            self.auth_registry.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.registry.stop()
        self.auth_registry.stop()
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            mine = f"reference=dreamscape-test/*:{self.tag}"
            images = docker("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", mine)
            if images.split():
                docker("rmi", "--force", *images.split())
        shutil.rmtree(self.base, ignore_errors=True)

    def build(self, variant: str) -> Variant:
        """`docker import` of busybox-static and the serve script, once per variant."""
        built = Variant(variant, self.tag)
        if variant in self._built:
            return built
        root = self.base / "rootfs" / variant
        (root / "bin").mkdir(parents=True)
        if variant.startswith(BARE):
            return self._build_bare(built, root, int(variant.removeprefix(BARE)))
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "serve").write_text(SERVE)
        (root / "serve").chmod(0o755)
        (root / "mode").write_text(variant + "\n")
        archive = root.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
        docker("import", "--change", 'CMD ["/serve"]', "--change", "ENV PORT=8080", str(archive), built.local)
        self._built.add(variant)
        return built

    def _build_bare(self, built: Variant, root: Path, port: int) -> Variant:
        shutil.copy2(BUSYBOX, root / "bin" / "server")
        (root / "bin" / "httpd").symlink_to("server")
        (root / "www").mkdir()
        (root / "www" / "index.html").write_text("bare\n")
        (root / "www" / "health").write_text("ok\n")
        archive = root.with_suffix(".tar")
        with tarfile.open(archive, "w") as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
        command = json.dumps(["/bin/httpd", "-f", "-v", "-p", str(port), "-h", "/www"])
        docker("import", "--change", f"CMD {command}", str(archive), built.local)
        self._built.add(built.name)
        return built

    def publish(self, reference: str, variant: str = "healthy") -> str:
        """Push a variant under `reference` (a tag of one of the two registries), then drop the
        local tag, so the engine has the image only once a deploy pulls it."""
        if self._published.get(reference) == variant:
            return reference
        image = self.build(variant)
        docker("tag", image.local, reference)
        try:
            docker("push", "--quiet", reference, config=self._registry_of(reference).admin_config)
        finally:
            docker("rmi", reference)
        self._published[reference] = variant
        return reference

    def _registry_of(self, reference: str) -> Registry:
        return next(r for r in (self.registry, self.auth_registry) if reference.startswith(r.host + "/"))

    def delete(self, reference: str) -> None:
        """The registry no longer holds the image (a retention clean-up)."""
        self._registry_of(reference).delete(reference)
        self._published.pop(reference, None)
