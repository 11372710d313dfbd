"""The size caps the code writes inline as numbers, each reached at its edge: the last character
(or byte) kept and the next one cut, so that moving a cap by one fails here.

- ci/instances.py: a new container instance that does not become ACTIVE is named with 200
  printable characters of its lifecycleDetails.
- ci/oci.py: an error answer's problem is its first line's printable characters, 300 of them; a
  failed bastion session is named with 200 printable characters of its lifecycleDetails; a
  failed openssl with 200 printable characters of its stderr, on one line.
- ci/scan.py: an image archive is hashed 1 MiB (1 << 20 bytes) a read, never held whole.
- the deploy program: the first-boot file shows 80 printable characters; the edge proxy's
  admin answer is read up to 1 MiB (1024 * 1024 bytes) and a refusal shows its first 2000 bytes;
  the lock holder's record is read 4096 bytes deep.
- components/environment/network.py: a VCN's DNS label is cut to 15 characters.
- components/workflows/emit.py: generated text with trailing whitespace is named by its first
  60 characters.

The numbers are written here, never read back from the code they bound. The calls go to real
processes, files and Unix sockets on tmp paths, or to the OCI stand-in on 127.0.0.1; nothing
waits for real.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import instances, scan
from ci import oci as ci_oci
from components.environment import deploy_program, network
from components.workflows import emit
from tests.harness.oci_api import BastionSpec, OciApi
from tests.test_ci_limits import platform_of, variable
from tests.test_ci_oci import BASTION, bastion_client, create, principal  # noqa: F401 - fixture
from tests.test_deploy_instances import Clock
from tests.test_time_limits import program_settings, tools

PROGRAM = deploy_program.load_program()


# --- ci/instances.py ------------------------------------------------------------------------------


class FailedInstance:
    """The Api `wait_healthy` reads: the new instance is FAILED with `details`."""

    def __init__(self, details: str) -> None:
        self.details = details
        self.client = self

    def instance(self, instance_id: str) -> dict[str, str]:
        return {"id": instance_id, "lifecycleState": "FAILED", "lifecycleDetails": self.details}

    def sleep(self, seconds: float) -> None:
        raise AssertionError("a FAILED instance is not waited for")


def test_an_instance_that_fails_shows_200_printable_characters_of_its_details() -> None:
    details = "\r\n\t" + "d" * 199 + "e" + "f" * 50
    req = instances.Request(
        platform=platform_of(variable()), credential="unused", images={}, secrets={}, wait_timeout=90
    )
    job = instances.Deploy(req, FailedInstance(details), Clock(), log=lambda line: None)  # type: ignore[arg-type]
    job.new_id = "ocid1.containerinstance.oc1.eu-frankfurt-1.new"
    with pytest.raises(instances.UnhealthyError) as failed:
        job.wait_healthy()
    shown = "d" * 199 + "e"
    assert len(shown) == 200
    assert str(failed.value) == f"the new instance is FAILED, not ACTIVE {shown}"


# --- ci/oci.py ------------------------------------------------------------------------------------


def test_an_oci_error_shows_300_printable_characters_of_the_answers_problem(principal, tmp_path: Path) -> None:  # noqa: F811
    """The problem is `<code>: <message>`; the tab is no printable character and does not count."""
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[principal]) as api:
        api.fail_next("create-session", 400, "InvalidParameter", "\t" + "m" * 281 + "n" + "o" * 50)
        with pytest.raises(ci_oci.OciError) as refused:
            create(bastion_client(api, principal, tmp_path))
    problem = "InvalidParameter: " + "m" * 281 + "n"
    assert len(problem) == 300
    assert str(refused.value) == f"Create the bastion session: HTTP 400 {problem}"


class FailedSessions(OciApi):
    """The OCI stand-in, its FAILED sessions with these lifecycleDetails."""

    details = ""

    def session_model(self, session):
        model = super().session_model(session)
        if session.state == "FAILED":
            model.lifecycle_details = self.details
        return model


def test_a_failed_bastion_session_shows_200_printable_characters_of_its_details(principal, tmp_path: Path) -> None:  # noqa: F811
    with FailedSessions(bastions={BASTION: BastionSpec(outcome="FAILED")}, principals=[principal]) as api:
        api.details = "\x1b" + "s" * 199 + "t" + "u" * 50
        bastion = bastion_client(api, principal, tmp_path)
        session_id = create(bastion)
        with pytest.raises(ci_oci.OciError) as failed:
            bastion.wait_active(session_id, clock=Clock())
    shown = "s" * 199 + "t"
    assert len(shown) == 200
    assert str(failed.value) == f"the bastion session is FAILED, not ACTIVE {shown}"


def test_a_failed_openssl_shows_200_characters_of_its_stderr_on_one_line(tmp_path: Path, monkeypatch) -> None:
    """An openssl that fails with a long message over two lines and a control character: its
    stderr is one line of printable characters, then cut."""
    said = "o" * 100 + "\\n\\033" + "o" * 98 + "p" + "q" * 50
    openssl = tools(tmp_path, openssl=f"printf '\\n  {said}  \\n' >&2\nexit 1")
    monkeypatch.setattr(ci_oci, "TOOL_ENV", {"PATH": f"{openssl}:/usr/bin:/bin", "LC_ALL": "C"})
    with pytest.raises(ci_oci.OciError) as failed:
        ci_oci.new_rsa_key(tmp_path / "run.pem")
    shown = "o" * 100 + " " + "o" * 98 + "p"
    assert len(shown) == 200
    assert str(failed.value) == f"openssl genpkey failed: {shown}"


# --- ci/scan.py -----------------------------------------------------------------------------------


class Blocks:
    """`hashlib` as ci/scan.py sees it: a sha256 that notes the size of each block it is given."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.digest = hashlib.sha256()

    def sha256(self) -> Blocks:
        return self

    def update(self, block: bytes) -> None:
        self.sizes.append(len(block))
        self.digest.update(block)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def test_an_image_archive_is_hashed_1048576_bytes_a_read(tmp_path: Path, monkeypatch) -> None:
    """The archives build-test leaves may be gigabytes: each is read 1 MiB at a time, its sum the
    sum of the whole file."""
    data = bytes(range(256)) * 8192 + b"!"
    assert len(data) == 2 * (1 << 20) + 1
    archive = tmp_path / "gateway.tar"
    archive.write_bytes(data)
    blocks = Blocks()
    monkeypatch.setattr(scan, "hashlib", blocks)
    assert scan.sha256_of(archive) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert blocks.sizes == [1048576, 1048576, 1]


# --- the deploy program ---------------------------------------------------------------------------


def test_the_first_boot_shows_80_printable_characters_of_its_file(tmp_path: Path) -> None:
    """The escape is no printable character and does not count; the blanks around are stripped."""
    path = tmp_path / "first-boot"
    path.write_text("\n  " + "c" * 40 + "\x1b" + "c" * 39 + "d" + "e" * 50 + "\n")
    shown = "c" * 79 + "d"
    assert len(shown) == 80
    assert PROGRAM.first_boot(program_settings(tmp_path, DREAMSCAPE_DEPLOY_FIRST_BOOT=str(path))) == shown


class _Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may stop reading before the end
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def edge_admin(path: Path, status: int, body: bytes) -> Iterator[Path]:
    """An HTTP server on the Unix socket `path` answering every GET with `status` and `body`."""
    server = socketserver.UnixStreamServer(str(path), _Answer)
    server.answer = (status, body)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def edge(tmp_path: Path, admin: Path):
    return PROGRAM.Edge(
        program_settings(tmp_path, DREAMSCAPE_DEPLOY_EDGE_ADMIN=str(admin)), PROGRAM.Console(io.StringIO())
    )


def test_an_edge_refusal_shows_the_first_2000_bytes_of_its_answer(tmp_path: Path) -> None:
    answer = b"b" * 1999 + b"c" + b"d" * 500
    with edge_admin(tmp_path / "admin.sock", 500, answer) as admin, pytest.raises(PROGRAM.EdgeError) as refused:
        edge(tmp_path, admin).in_flight([20000])
    shown = "b" * 1999 + "c"
    assert len(shown) == 2000
    assert str(refused.value) == f"the edge proxy answered GET /reverse_proxy/upstreams with 500: {shown}"


def upstreams_of_length(length: int) -> bytes:
    """Caddy's upstreams, 3 requests open to 127.0.0.1:20000, as JSON of `length` bytes."""
    head = b'[{"address": "127.0.0.1:20000", "num_requests": 3}'
    return head + b" " * (length - len(head) - 1) + b"]"


def test_an_edge_answer_is_read_up_to_1048576_bytes_and_a_longer_one_is_cut(tmp_path: Path) -> None:
    """An answer of 1 MiB (1024 * 1024 bytes) is read whole; one byte more and its end is not
    read: the JSON is cut short, a ValueError (which the program reports as an error)."""
    whole = upstreams_of_length(1048576)
    assert len(whole) == 1024 * 1024
    with edge_admin(tmp_path / "admin.sock", 200, whole) as admin:
        assert edge(tmp_path, admin).in_flight([20000]) == 3
    (tmp_path / "admin.sock").unlink()
    cut = pytest.raises(ValueError, match=r"^Expecting ',' delimiter")
    with edge_admin(tmp_path / "admin.sock", 200, upstreams_of_length(1048577)) as admin, cut:
        edge(tmp_path, admin).in_flight([20000])


def test_a_lock_holder_record_of_4096_bytes_is_described_and_a_longer_one_is_an_unknown_process(
    tmp_path: Path, monkeypatch
) -> None:
    """The record the holding deploy writes (its pid, command, client and start) is read 4096
    bytes deep: one a byte longer is cut, no JSON, and the holder an unknown process."""
    monkeypatch.setattr(PROGRAM, "utc_now", lambda: "2025-01-02T03:04:05Z")
    settings = program_settings(tmp_path)
    console = PROGRAM.Console(io.StringIO())
    empty = {"pid": 4242, "command": "", "client": "203.0.113.9", "since": "2025-01-02T03:04:05Z"}
    command = "c" * (4096 - len(json.dumps(empty)))
    with PROGRAM.Lock(settings, console, {"pid": 4242, "command": command, "client": "203.0.113.9"}):
        assert len((settings.state_dir / "lock").read_bytes()) == 4096
        assert PROGRAM.lock_holder(settings) == f"pid 4242 ({command}) from 203.0.113.9 since 2025-01-02T03:04:05Z"
    with PROGRAM.Lock(settings, console, {"pid": 4242, "command": command + "c", "client": "203.0.113.9"}):
        assert len((settings.state_dir / "lock").read_bytes()) == 4097
        assert PROGRAM.lock_holder(settings) == "an unknown process"


# --- components/ ----------------------------------------------------------------------------------


def test_a_vcn_dns_label_is_ds_and_the_environments_letters_and_digits_cut_to_15_characters() -> None:
    """OCI takes a DNS label of at most 15 characters; the shipped environments' are shorter."""
    label = "ds" + "a" * 12 + "b"
    assert len(label) == 15
    assert network.dns_label("a-" * 12 + "b" + "c" * 10) == label
    assert network.dns_label("production") == "dsproduction"


def test_trailing_whitespace_is_named_by_the_first_60_characters_of_the_text() -> None:
    shown = "a" * 59 + "b"
    assert len(shown) == 60
    with pytest.raises(ValueError) as refused:
        emit.dump({"jobs": {"build": {"run": shown + "c" * 50 + " "}}}, "tests")
    assert str(refused.value) == f"trailing whitespace in generated text: {shown!r}"
