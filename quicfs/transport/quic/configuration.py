"""The QuicConfiguration of each side (qh3's): ALPN ``smb`` (MS-SMB2 2.1), the idle
timeout, spare connection ids, flow-control windows and datagram sizes; on the client also
how the server's certificate is checked (:class:`~quicfs.transport.quic.tls.QuicTLSOptions`).
"""

from __future__ import annotations

import logging
import os

from qh3.quic.configuration import QuicConfiguration

from quicfs.errors import UsageError
from quicfs.transport.quic.tls import QuicTLSOptions

log = logging.getLogger("quicfs.quic")

ALPN = "smb"
IDLE_TIMEOUT = 30.0
ACTIVE_CID_LIMIT = 8
#: The client's flow-control windows (client_configuration).
CLIENT_STREAM_WINDOW = 16 * 1024 * 1024
CLIENT_CONNECTION_WINDOW = 24 * 1024 * 1024
#: The largest datagram the server sends (RFC 9000 14): 1500-byte Ethernet less IPv6 and
#: UDP headers. (peer_path.MIN_WINDOW is two of these.)
MAX_DATAGRAM = 1452


def client_configuration(server_name: str, tls: QuicTLSOptions, *,
                         max_datagram_size: int | None = None,
                         qlog_dir: str | None = None,
                         session_ticket: object | None = None) -> QuicConfiguration:
    import ssl

    config = QuicConfiguration(
        alpn_protocols=[ALPN],
        is_client=True,
        server_name=server_name,
        idle_timeout=IDLE_TIMEOUT,
        # 1452 B fits an Ethernet path. A larger max_datagram_size= is faster on paths
        # that carry it, but qh3 2.1 then cannot migrate the connection.
        max_datagram_size=max_datagram_size or 1452,
        # Spare connection ids let either side move to a new path (RFC 9000 5.1.1, 9.5).
        active_connection_id_limit=ACTIVE_CID_LIMIT,
        probe_datagram_size=True,
        # Flow-control windows (RFC 9000 4.1) for what the server sends us: a path
        # carries rate x RTT in flight, and qh3's default stream window (6 MiB) caps a
        # 100 ms path near 60 MB/s. 16 MiB covers 1 Gbit/s at 130 ms; memory stays
        # bounded by it, as the driver withholds credit while a reader is behind.
        max_stream_data=CLIENT_STREAM_WINDOW,
        max_data=CLIENT_CONNECTION_WINDOW,
    )
    pin = tls.pinned_sha256()
    if tls.insecure:
        log.warning("insecure: the server's certificate is NOT verified (for tests only)")
        config.verify_mode = ssl.CERT_NONE
    elif pin is not None:
        # A pinned certificate stands on its own: no CA, no name (like ssh's known_hosts).
        config.verify_mode = ssl.CERT_NONE
        config.assert_fingerprint = pin
    else:
        config.verify_mode = ssl.CERT_REQUIRED
        if tls.cafile:
            if not os.path.isfile(tls.cafile):
                raise UsageError(f"cafile {tls.cafile}: no such file")
            config.cafile = tls.cafile
        else:
            paths = ssl.get_default_verify_paths()
            if paths.cafile:
                config.cafile = paths.cafile
            elif paths.capath:
                config.capath = paths.capath
    if tls.cert or tls.key:
        if not (tls.cert and tls.key):
            raise UsageError("a client certificate needs both cert= and key=")
        for path in (tls.cert, tls.key):
            if not os.path.isfile(path):
                raise UsageError(f"{path}: no such file")
        config.load_cert_chain(tls.cert, tls.key)
    if qlog_dir:
        from qh3.quic.logger import QuicFileLogger

        os.makedirs(qlog_dir, exist_ok=True)
        config.quic_logger = QuicFileLogger(qlog_dir)
    if session_ticket is not None:
        config.session_ticket = session_ticket  # type: ignore[assignment]
    return config


def server_configuration(cert: str, key: str) -> QuicConfiguration:
    config = QuicConfiguration(alpn_protocols=[ALPN], is_client=False,
                               idle_timeout=IDLE_TIMEOUT, max_datagram_size=MAX_DATAGRAM,
                               active_connection_id_limit=ACTIVE_CID_LIMIT)
    config.load_cert_chain(cert, key)
    return config
