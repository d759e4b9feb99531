"""A TLS-terminating TCP proxy on loopback for the HTTPS tests: clients speak TLS to it (a test
certificate), it forwards the plain bytes to a local port (Orthanc's HTTP). Debian's Orthanc 1.10.1
crashes on HTTPS requests (SslEnabled), hence this; the DICOMweb client cannot tell the difference."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

__all__ = ["TlsProxy"]


class TlsProxy:
    """``https://127.0.0.1:<port>`` in front of ``127.0.0.1:<target>``; a context manager."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self.target_port = target_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(cert), str(key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TlsProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(timeout=5)
        with self._lock:
            for s in self._open:
                s.close()
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(t)
        t.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._open.append(s)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(raw)
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):  # a wrong CA on the client side, a plain HTTP request
            return
        self._track(client)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            return
        self._track(upstream)
        client.settimeout(None)
        upstream.settimeout(None)
        self._spawn(self._pump, upstream, client)
        self._pump(client, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(1 << 16):
                dst.sendall(chunk)
        except (OSError, ssl.SSLError):
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
