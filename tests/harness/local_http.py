"""An HTTP server on 127.0.0.1 in a thread of its own, as the stand-ins run theirs: started and
stopped within a time limit, never listening beyond this machine."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start(
    server_class: type[ThreadingHTTPServer],
    handler: type[BaseHTTPRequestHandler],
    name: str,
    poll_interval: float,
    timeout: float,
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """`server_class` on a free port of 127.0.0.1, serving in a daemon thread named `name`."""
    server = server_class(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not thread.is_alive():
        if time.monotonic() > deadline:
            server.server_close()
            raise RuntimeError(f"the {name} stand-in did not start")
        time.sleep(0.01)
    return server, thread


def stop(server: ThreadingHTTPServer | None, thread: threading.Thread | None, name: str, timeout: float) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=timeout)
        if thread.is_alive():
            raise RuntimeError(f"the {name} stand-in did not stop")
