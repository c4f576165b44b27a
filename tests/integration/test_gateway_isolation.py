"""One connection's failure is that connection's: a fault injected into one connection's
handling inside a real gateway (in this process, in front of the test smbd) ends that
connection, logged with its peer, while another connection's transfer finishes
byte-exact and the gateway goes on serving."""

from __future__ import annotations

import hashlib
import logging
import os

import trio

import quicfs
from quicfs.cert import write_self_signed
from quicfs.gateway import Gateway


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_fault_in_one_connection_ends_it_alone(samba, tmp_path, caplog):
    files = write_self_signed("localhost", tmp_path, extra_names=["127.0.0.1"])
    gateway = Gateway(listen=("127.0.0.1", 0), backend=("127.0.0.1", samba.port),
                      cert=str(files.cert), key=str(files.key))
    data = os.urandom(16 * 1024 * 1024)
    (samba.share_path("plain") / "isolated.bin").write_bytes(data)
    opts = (f"transport=quic,fingerprint={files.fingerprint},"
            f"username={samba.username},password={samba.password}")
    caplog.set_level(logging.INFO, logger="quicfs.gateway")
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            url = f"//127.0.0.1:{port}/plain"
            async with quicfs.connect(url, opts) as one, quicfs.connect(url, opts) as two:
                assert gateway.server is not None
                victim_port = two.conn.transport.driver.sock.getsockname()[1]
                victim = next(d for d in gateway.server.connections
                              if d.peer_addr[1] == victim_port)

                def broken() -> bool:
                    raise TypeError("injected fault")

                read_back = bytearray()
                injected = False

                async def sink(chunk: bytes) -> None:
                    nonlocal injected
                    read_back.extend(chunk)
                    if not injected and len(read_back) >= 4 * 1024 * 1024:
                        # Mid-transfer on one, the other's handling breaks.
                        injected = True
                        victim._turn = broken  # type: ignore[method-assign]
                        two.conn.transport.probe()

                async with one.opened("isolated.bin") as f:
                    await f.read_stream(sink, size_hint=f.size)
                assert injected and sha(bytes(read_back)) == sha(data)
                with trio.fail_after(10):
                    await victim.terminated.wait()
                await trio.sleep(0.1)  # its task's cleanup
                assert victim not in gateway.server.connections
                assert gateway.refusals.total["connection ended by an internal error"] == 1
                # The gateway still serves: a new connection reads it all again.
                async with quicfs.connect(url, opts) as three:
                    assert sha(await three.read_file("isolated.bin")) == sha(data)
                assert sha(await one.read_file("isolated.bin")) == sha(data)
            nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("connection ended")]
    assert lines == [f"connection ended by an internal error: 127.0.0.1:{victim_port}: "
                     "internal error: TypeError: injected fault"]
