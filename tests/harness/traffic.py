"""Steady traffic to a published port while a deploy runs, as users would send it, for the
gapless-deploy tests and `make bench-deploy`.

Three kinds of client at once, each in its own threads, every request bounded in time:
- `fresh`: a GET of `/` every 20 ms, each on a new connection;
- `kept`: a GET of `/` every 20 ms on one persistent (keep-alive) connection, as a browser or
  an API client holds one; a connection the server closes between two requests counts as a
  failure, since that is exactly what a proxy reload does to such clients;
- `slow`: GETs of `/cgi-bin/slow` (a second each, tests/harness/engine.py) from four threads,
  so requests are always in flight when traffic moves from one release to the next.

A failure is a refused or reset connection, a timeout, or any status but 200. Each answer is
recorded with its start and end time and its body (the image variant's name), so a test can
tell which release answered.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

INTERVAL = 0.02
"""Seconds between two requests of a `fresh` or `kept` client."""
TIMEOUT = 5.0
SLOW_CLIENTS = 4


@dataclass(frozen=True)
class Answer:
    kind: str
    path: str
    began: float
    ended: float
    ok: bool
    body: str
    """The body, or what went wrong."""


@dataclass
class Traffic:
    host: str
    port: int
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._fresh, daemon=True),
            threading.Thread(target=self._kept, daemon=True),
            *(threading.Thread(target=self._slow, daemon=True) for _ in range(SLOW_CLIENTS)),
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT + 5)

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def _ask(self, connection: http.client.HTTPConnection, kind: str, path: str) -> None:
        began = time.monotonic()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode(errors="replace").strip()
            ok = response.status == 200
            if not ok:
                body = f"HTTP {response.status}: {body[:200]}"
        except (OSError, http.client.HTTPException) as error:
            ok, body = False, f"{type(error).__name__}: {error}"
            connection.close()
        self._record(Answer(kind, path, began, time.monotonic(), ok, body))

    def _every(self, action) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            action()
            next_at += INTERVAL
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _fresh(self) -> None:
        def once() -> None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
            try:
                self._ask(connection, "fresh", "/")
            finally:
                connection.close()

        self._every(once)

    def _kept(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            self._every(lambda: self._ask(connection, "kept", "/"))
        finally:
            connection.close()

    def _slow(self) -> None:
        while not self._stop.is_set():
            connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
            try:
                self._ask(connection, "slow", "/cgi-bin/slow")
            finally:
                connection.close()

    # --- what happened -----------------------------------------------------------------------

    def of(self, kind: str) -> list[Answer]:
        with self._lock:
            return sorted((a for a in self.answers if a.kind == kind), key=lambda a: a.began)

    def failed(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if not a.ok]

    def bodies(self, kind: str = "fresh") -> list[str]:
        """The distinct bodies in the order they first came, e.g. ["v1", "v2"]."""
        seen: list[str] = []
        for answer in self.of(kind):
            if answer.ok and (not seen or seen[-1] != answer.body):
                seen.append(answer.body)
        return seen

    def first(self, body: str, kind: str = "fresh") -> float | None:
        """When the first request answered with `body` was sent."""
        return next((a.began for a in self.of(kind) if a.ok and a.body == body), None)

    def summary(self) -> str:
        failed = self.failed()
        counts = {kind: len(self.of(kind)) for kind in ("fresh", "kept", "slow")}
        shown = "; ".join(f"{a.kind} {a.path}: {a.body}" for a in failed[:5])
        return f"{len(failed)} of {sum(counts.values())} failed {counts}" + (f": {shown}" if shown else "")
