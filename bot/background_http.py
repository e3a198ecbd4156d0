"""A local HTTP server served from a daemon thread: bind (port 0 = any free port), serve, stop cleanly."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BackgroundHTTPServer:
    """Usage: ``srv = BackgroundHTTPServer("127.0.0.1", 0, Handler, name="page"); port = srv.start(); srv.stop()``."""

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler], *, name: str,
                 poll_interval: float = 0.05) -> None:
        self.host, self.port, self.handler, self.name, self.poll_interval = host, port, handler, name, poll_interval
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        """Bind and serve in a daemon thread (idempotent); returns the bound port."""
        if self._server is None:
            self._server = ThreadingHTTPServer((self.host, self.port), self.handler)
            self._server.daemon_threads = True
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": self.poll_interval},
                                            name=f"{self.name}:{self.port}", daemon=True)
            self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
