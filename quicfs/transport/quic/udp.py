"""UDP for QUIC, shared by the client's driver and the server's dispatcher: sockets,
sends that hand the kernel runs of datagrams as one (GSO, UDP_SEGMENT) and receives that
get them as one (GRO). A lost send is QUIC's to repair (RFC 9002), as on any path.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct

log = logging.getLogger("quicfs.quic")

#: Linux UDP_SEGMENT (GSO) and UDP_GRO socket options, include/uapi/linux/udp.h.
UDP_SEGMENT = 103
UDP_GRO = 104
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
#: What one recvmsg may return: a datagram, or a GRO super-buffer of them.
RECV_SIZE = 65536


def gro_segment(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The segment size of a GRO super-buffer (its UDP_GRO control message); 0 for a
    plain datagram."""
    for level, kind, data in ancdata:
        if level == socket.SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:2], "little") if len(data) == 2 else \
                struct.unpack("=i", data[:4])[0]
    return 0


def new_udp_socket(family: int, bind: tuple[str, int] | None = None, *,
                   gro: bool = True) -> socket.socket:
    """A non-blocking UDP socket bound to ``bind`` (any address, a free port if None),
    with 4 MiB buffers, and GRO unless ``gro`` is False."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if gro:
        try:
            # The kernel may hand us runs of datagrams as one buffer (UDP GRO).
            sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
        except OSError:
            pass
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        except OSError:
            pass
    if bind is None:
        bind = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
    sock.bind(bind)
    return sock


def send_batch(sock: socket.socket, datagrams: list[tuple[bytes, object]], *,
               gso: bool) -> None:
    """Send datagrams; runs of equal-size datagrams to one address go as one GSO
    super-buffer where the kernel takes it (UDP_SEGMENT). A full socket buffer drops the
    rest: QUIC's loss recovery resends (RFC 9002), as a router's queue would."""
    i, count = 0, len(datagrams)
    while i < count:
        data, addr = datagrams[i]
        j = i + 1
        if gso:
            size = len(data)
            # The kernel takes at most 64 segments and 64 KiB in one GSO send.
            end = min(count, i + max(1, min(64, 65000 // size)))
            while j < end:
                following, to = datagrams[j]
                if to != addr or len(following) > size:
                    break
                j += 1
                if len(following) < size:
                    break  # the last segment may be shorter
        try:
            if j - i > 1:
                # The datagrams go as the iovecs of one message, not joined: the kernel
                # gathers them and cuts the whole into segments (no copy of ours).
                sock.sendmsg([d for d, _ in datagrams[i:j]],
                             [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(data)))],
                             0, addr)
            else:
                sock.sendto(data, addr)  # type: ignore[arg-type]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP) \
                    and j - i > 1:
                gso = False  # the kernel or path refuses GSO: one by one from now on
                continue
            log.debug("sendto %s: %s", addr, exc)
        i = j

