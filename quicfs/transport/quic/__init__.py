"""SMB over QUIC (MS-SMB2 2.1; RFC 9000, 9001): qh3's sans-I/O QUIC engine driven by
trio, a client and a server around one connection driver, as aioquic splits them.

- ``configuration.py``: each side's QuicConfiguration (ALPN smb, windows, timeouts).
- ``tls.py``: how the client checks the server's certificate, and what a failed
  handshake is told as.
- ``tickets.py``: TLS session tickets, the client's on disk, the server's in memory.
- ``udp.py``: UDP sockets with GSO and GRO, for both sides.
- ``driver.py``: the task that drives one connection's engine.
- ``stream.py``: a QUIC stream as a trio stream, and the SMB transport on it.
- ``client.py``: :func:`open_quic`, the client's connect.
- ``server.py``: the server's dispatcher, which routes datagrams to connections;
  ``admission.py`` (whom it admits), ``retry.py`` (Retry tokens) and ``peer_path.py``
  (following a client's address) are its parts.

The engine itself, and every reach into qh3's or aioquic's internals, is
:mod:`quicfs.transport.engine` (qh3) and :mod:`quicfs.transport.engine_aioquic`.
"""

from quicfs.transport.quic.client import DEFAULT_PORT, open_quic
from quicfs.transport.quic.configuration import ALPN
from quicfs.transport.quic.stream import QuicStream, QuicTransport
from quicfs.transport.quic.tickets import TicketStore
from quicfs.transport.quic.tls import QuicTLSOptions

__all__ = ["ALPN", "DEFAULT_PORT", "QuicStream", "QuicTLSOptions", "QuicTransport",
           "TicketStore", "open_quic"]
