"""A local HTTP file server that honours `Range` and `If-Match`, counts what it serves, and
misbehaves on request: 404, 403, throttling (429), content swapped between requests, latency.

Used by tests/test_remote.py and bench/run_remote.py; no network beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Served:
    """What the server serves, how it misbehaves, and what it counted."""

    files: dict[str, Path] = field(default_factory=dict)
    """URL path (`/a.pt`) -> file on disk (sparse files are fine)."""
    status: dict[str, list[int]] = field(default_factory=dict)
    """URL path -> statuses to answer before serving it (popped one per request)."""
    swap: dict[str, list[Path]] = field(default_factory=dict)
    """URL path -> files it is replaced by, one more after each ranged GET."""
    latency: float = 0.0
    """Seconds each request waits before it is answered."""
    honour_if_match: bool = True
    """False: serve whatever version is current, as servers that ignore If-Match do."""
    honour_range: bool = True
    """False: answer every GET with the whole file (200), as servers without ranges do."""
    body_bytes: int = 0
    requests: int = 0
    per_path: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.body_bytes = self.requests = 0
            self.per_path.clear()


def _etag(path: Path) -> str:
    st = os.stat(path)
    return (
        '"'
        + hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
        + '"'
    )


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _refuse(self, status: int) -> None:
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            if served.latency:
                time.sleep(served.latency)
            name = self.path.split("?", 1)[0]
            with served.lock:
                served.requests += 1
                pending = served.status.get(name)
                status = pending.pop(0) if pending else None
                path = served.files.get(name)
            if status is not None:
                self._refuse(status)
                return
            if path is None:
                self._refuse(404)
                return
            size = os.stat(path).st_size
            tag = _etag(path)
            wanted = self.headers.get("If-Match")
            if served.honour_if_match and wanted is not None and wanted != tag:
                self._refuse(412)
                return
            start, end = 0, size
            ranged = self.headers.get("Range") if served.honour_range else None
            if ranged is not None:
                m = _RANGE.match(ranged.strip())
                if m is None or (not m.group(1) and not m.group(2)):
                    self._refuse(416)
                    return
                if m.group(1):
                    start = int(m.group(1))
                    end = min(size, int(m.group(2)) + 1) if m.group(2) else size
                else:
                    start = max(0, size - int(m.group(2)))
                if start >= size or end <= start:
                    self._refuse(416)
                    return
            self.send_response(206 if ranged is not None else 200)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", tag)
            self.send_header("Content-Type", "application/octet-stream")
            if ranged is not None:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if not body:
                return
            with open(path, "rb") as fh:
                fh.seek(start)
                left = end - start
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            with served.lock:
                served.body_bytes += end - start
                served.per_path[name] = served.per_path.get(name, 0) + end - start
                if ranged is not None and served.swap.get(name):
                    served.files[name] = served.swap[name].pop(0)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

    return Handler


@contextmanager
def serving(served: Served) -> Iterator[str]:
    """Serve `served` on 127.0.0.1; yields the base URL (`http://127.0.0.1:PORT`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
