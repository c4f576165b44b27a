"""SMB over QUIC (MS-SMB2 2.1; RFC 9000, 9001): qh3's sans-I/O QUIC engine driven by
trio, a client and a server around one connection driver, as aioquic splits them.

- ``configuration.py``: each side's QuicConfiguration (ALPN smb, windows, timeouts).
- ``tls.py``: how the client checks the server's certificate, and what a failed
  handshake is told as.
- ``tickets.py``: TLS session tickets, the client's on disk, the server's in memory.
- ``udp.py``: UDP sockets with GSO and GRO, for both sides.
- ``driver.py``: the task that drives one connection's engine, the part both sides
  share; ``client_driver.py`` and ``server_driver.py``: where each side's datagrams come
  from and go to.
- ``stream.py``: a QUIC stream as a trio stream, and the SMB transport on it.
- ``client.py``: :func:`open_quic`, the client's connect.
- ``server.py``: the server's dispatcher, which routes datagrams to connections;
  ``admission.py`` (whom it admits), ``retry.py`` (Retry tokens) and ``peer_path.py``
  (following a client's address) are its parts.
- ``engine.py``: the engine, qh3's QuicConnection with what we need of it, and the
  choice of engine by congestion controller; ``engine_aioquic.py`` (and
  ``engine_aioquic_edges.py``): aioquic behind the same interface, for BBR.

Every reach into qh3's or aioquic's private attributes is in those two engines; the one
other is aioquic_cc.attach_pacer (aioquic has no hook for a pacer). The driver and all
above it use only the engine's interface.

Theory of operation
-------------------
A driver (:class:`~quicfs.transport.quic.driver.QuicDriver`) owns one engine (qh3's
``QuicConnection``, engine.py) and one *worker* task. The worker loops: send what the
engine has to send (``datagrams_to_send``), then wait for whichever comes first --
input (datagrams) or the engine's timer (``get_timer``) -- then feed the input
(``receive_datagram``) or fire the timer (``handle_timer``) and hand the engine's events
to the streams. ``now`` is always ``trio.current_time()``, so timers are monotonic and
tests may run on a MockClock.

Each pass through trio's scheduler costs about as much as qh3's work for a message, so
the hops per message are few. A stream writer queues data in the engine
(``send_stream_data``); on a client it then *wakes* the worker, which cancels its wait and
sends on its next pass what every writer of this pass queued (one datagram for many small
requests); on a server the writer sends at once (``QuicDriver.kick``) and moves the
worker's timer. A wake that arrives while the worker is busy is remembered in a flag, so
none is lost. On a server the dispatcher also feeds the engine itself
(``ServerDriver.take_input``). Writers wait while the engine holds more than
``SEND_HIGH_WATER`` bytes not yet sent (flow or congestion control): memory stays
bounded.

Input comes from the driver's own UDP socket on the client, and from the server's
dispatcher on the server (:mod:`quicfs.transport.quic.server`), which routes datagrams by
connection id. The client's socket is never ``connect()``-ed, so the connection can move
to a new local socket (``ClientDriver.migrate``, RFC 9000 section 9) and the engine
validates the new path itself.

One bidirectional stream carries SMB, framed exactly as on TCP
(:class:`~quicfs.transport.framing.FramedStream` on top of
:class:`~quicfs.transport.quic.stream.QuicStream`).
"""

from quicfs.transport.quic.client import DEFAULT_PORT, open_quic
from quicfs.transport.quic.configuration import ALPN
from quicfs.transport.quic.stream import QuicStream, QuicTransport
from quicfs.transport.quic.tickets import TicketStore
from quicfs.transport.quic.tls import QuicTLSOptions

__all__ = ["ALPN", "DEFAULT_PORT", "QuicStream", "QuicTLSOptions", "QuicTransport",
           "TicketStore", "open_quic"]
