"""How many changes of the client's address one qh3 server connection follows.

Two qh3 engines in memory, no sockets, no quicfs driver: after the handshake the client's
source port changes (as behind a NAT that rebinds), the client sends stream data, and we
count the server's datagrams that reach the new port within 5 s (simulated).

    .venv/bin/python bench/qh3_paths.py [--rebinds 8] [--cid-limit 8]

With qh3 2.1.0 the server answers the first three moves and none after, whatever the
connection-id limit: its core keeps at most four paths per connection and never removes
one (src/quic/path.rs: MAX_PATHS = 4; observe_remote refuses a fifth, and receive_one
drops the packet unread). The reason a mount behind a NAT that rebinds every second
reconnects every few seconds (docs/mount.quicfs.md, "Resilience").
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection

from quicfs.cert import write_self_signed

SERVER = ("127.0.0.1", 443)


class Pair:
    def __init__(self, cid_limit: int) -> None:
        files = write_self_signed("localhost", tempfile.mkdtemp())
        server_config = QuicConfiguration(alpn_protocols=["smb"], is_client=False,
                                          active_connection_id_limit=cid_limit)
        server_config.load_cert_chain(str(files.cert), str(files.key))
        client_config = QuicConfiguration(alpn_protocols=["smb"], is_client=True,
                                          server_name="localhost",
                                          active_connection_id_limit=cid_limit)
        client_config.verify_mode = ssl.CERT_NONE
        self.now = 1000.0
        self.port = 40000
        self.client = QuicConnection(configuration=client_config)
        self.client.connect(SERVER, self.now)
        # A server engine is made for the id the client's first Initial names.
        self.server = QuicConnection(
            configuration=server_config,
            original_destination_connection_id=self.client.original_destination_connection_id)

    def run(self, seconds: float) -> int:
        """Exchange datagrams for ``seconds`` (10 ms steps); datagrams the server sent
        to the client's current port."""
        answered = 0
        for _ in range(int(seconds * 100)):
            self.now += 0.01
            for data, _ in self.client.datagrams_to_send(self.now):
                self.server.receive_datagram(data, ("127.0.0.1", self.port), self.now)
            for data, addr in self.server.datagrams_to_send(self.now):
                if addr[1] == self.port:  # anything else went to a port that is gone
                    self.client.receive_datagram(data, SERVER, self.now)
                    answered += 1
            for conn in (self.client, self.server):
                timer = conn.get_timer()
                if timer is not None and timer <= self.now:
                    conn.handle_timer(self.now)
        return answered


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rebinds", type=int, default=8)
    ap.add_argument("--cid-limit", type=int, default=8)
    args = ap.parse_args()
    pair = Pair(args.cid_limit)
    print(f"handshake: {pair.run(0.5)} datagrams from the server")
    stream = pair.client.get_next_available_stream_id()
    followed = 0
    for i in range(1, args.rebinds + 1):
        pair.port += 1
        pair.client.send_stream_data(stream, b"x" * 5000)
        answered = pair.run(5.0)
        followed += answered > 0
        print(f"move {i}: {answered} datagrams reached the new port")
    print(f"the server followed {followed} of {args.rebinds} moves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
