"""An HTTPS KDC proxy (MS-KKDCP, the ``kdcproxy`` package's WSGI application) on
127.0.0.1, in a thread of the test process: Kerberos clients whose krb5.conf names
``kdc = https://localhost:PORT/KdcProxy`` reach the KDC only through it, as Windows
clients outside the network do. ``requests`` counts the messages it carried."""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from quicfs.cert import write_self_signed

NAME = "localhost"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class KdcProxy:
    def __init__(self, root: Path, realm: str, kdc: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        files = write_self_signed(NAME, self.root)
        #: The proxy's certificate: the clients' http_anchors.
        self.cert = Path(files.cert)
        self._key = Path(files.key)
        config = self.root / "kdcproxy.conf"
        # Only the KDC named here, never one found in DNS.
        config.write_text(f"[global]\nuse_dns = false\n\n[{realm}]\n"
                          f"kerberos = kerberos+tcp://{kdc}:88\n")
        self._config = config
        self.requests = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://{NAME}:{self._server.server_port}/KdcProxy"

    def __enter__(self) -> KdcProxy:
        import kdcproxy

        os.environ["KDCPROXY_CONFIG"] = str(self._config)
        try:
            app = kdcproxy.Application()
        finally:
            del os.environ["KDCPROXY_CONFIG"]

        def counting(environ, start_response):  # type: ignore[no-untyped-def]
            self.requests += 1
            return app(environ, start_response)

        server = make_server("127.0.0.1", 0, counting, handler_class=_Quiet)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.cert, self._key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        name="kdc-proxy")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()
