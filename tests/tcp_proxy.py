"""A TCP proxy for tests that make a server blink: memtune talks to PostgreSQL through it, and
``blink(seconds)`` drops every open connection and refuses new ones for a while (the machine's
PostgreSQL is shared: it is never stopped)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class BlinkingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._down_until = 0.0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def blink(self, seconds: float) -> None:
        """Closes every connection now and refuses new ones for ``seconds``."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            for connection in self._open:
                self.dropped += 1
                _close(connection)
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                _close(end)
                with self._lock:
                    self._open.discard(end)

    def close(self) -> None:
        self.listener.close()
        self.blink(0)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()
