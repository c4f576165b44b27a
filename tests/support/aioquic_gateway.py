"""A second, independent SMB-over-QUIC server for interop tests, built on aioquic (a test
dependency only): it splices each stream to the TCP SMB backend, like our gateway.

    python tests/support/aioquic_gateway.py --port P --backend-port B --cert C --key K
        [--request-client-cert] [--require-client-cert sha256:HEX]

With ``--request-client-cert`` the TLS server sends a CertificateRequest (aioquic keeps
that switch for tests) and prints the SHA-256 of the certificate each client presents:
``client certificate: sha256:HEX`` (or ``client certificate: none``). With
``--require-client-cert`` it also refuses a client without a certificate (TLS alert 116,
certificate_required) or with any certificate but the one named (alert 42,
bad_certificate), as a server that admits clients by certificate does; aioquic alone
would carry on without one (RFC 8446 4.4.2.4). It prints ``listening PORT`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

from aioquic import tls
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted
from cryptography.hazmat.primitives.serialization import Encoding


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend-port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--request-client-cert", action="store_true")
    ap.add_argument("--require-client-cert", metavar="SHA256")
    ap.add_argument("--alpn", default="smb")
    args = ap.parse_args()
    args.request_client_cert = args.request_client_cert or bool(args.require_client_cert)

    if args.require_client_cert:
        accept_certificate = tls.Context._server_handle_certificate

        class AlertCertificateRequired(tls.Alert):
            description = tls.AlertDescription.certificate_required

        def check_certificate(self: tls.Context, input_buf: object) -> None:
            accept_certificate(self, input_buf)
            cert = self._peer_certificate
            if cert is None:
                raise AlertCertificateRequired("a client certificate is required")
            digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
            if f"sha256:{digest}" != args.require_client_cert:
                raise tls.AlertBadCertificate("client certificate not allowed")

        tls.Context._server_handle_certificate = check_certificate  # type: ignore[method-assign]

    if args.request_client_cert:
        original_init = tls.Context.__init__

        def init(self: tls.Context, *a: object, **kw: object) -> None:
            original_init(self, *a, **kw)
            if not self._is_client:
                self._request_client_certificate = True

        tls.Context.__init__ = init  # type: ignore[method-assign]

    class Protocol(QuicConnectionProtocol):
        def quic_event_received(self, event: object) -> None:
            if isinstance(event, HandshakeCompleted) and args.request_client_cert:
                cert = self._quic.tls._peer_certificate
                if cert is None:
                    print("client certificate: none", flush=True)
                else:
                    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
                    print(f"client certificate: sha256:{digest}", flush=True)
            super().quic_event_received(event)  # type: ignore[arg-type]

    async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", args.backend_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(262144):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                try:
                    dst.write_eof()
                except (OSError, RuntimeError, AttributeError):
                    pass

        await asyncio.gather(pump(reader, b_writer), pump(b_reader, writer))
        b_writer.close()

    splices: set[asyncio.Task[None]] = set()

    def on_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(splice(reader, writer))
        splices.add(task)  # held until done, so the task is not collected mid-splice
        task.add_done_callback(splices.discard)

    async def run() -> None:
        config = QuicConfiguration(is_client=False, alpn_protocols=[args.alpn])
        config.load_cert_chain(args.cert, args.key)
        await serve("127.0.0.1", args.port, configuration=config, create_protocol=Protocol,
                    stream_handler=on_stream)
        print(f"listening {args.port}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
