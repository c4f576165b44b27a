"""An in-process UDP impairment proxy: loss, duplication, reordering, delay, blackouts and
NAT rebinding, between a QUIC client and server on loopback (kernel netem is not
available here).

    async with trio.open_nursery() as n:
        proxy = UdpImpairProxy(("127.0.0.1", server_port), loss=0.05, seed=1)
        port = await n.start(proxy.run)
        ...  # the client dials 127.0.0.1:port
        proxy.rebind()  # the server now sees the client from a new source port

Each client address gets its own upstream socket, as behind a NAT; ``rebind()`` swaps
those sockets for new ones (new source ports), so the server sees the client move
(RFC 9000 9.3). Randomness is seeded, so a run can be repeated.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

import trio


@dataclass
class Counters:
    seen: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


@dataclass
class _Mapping:
    client: tuple[str, int]
    sock: socket.socket
    held: list[bytes] = field(default_factory=list)


class UdpImpairProxy:
    def __init__(self, upstream: tuple[str, int], *, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, delay: float = 0.0,
                 seed: int = 0, rebind_every: float | None = None,
                 rebind_after: float = 0.0) -> None:
        self.upstream = upstream
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.rebind_every = rebind_every
        #: Rebinding begins this long after the proxy starts (``rebind_every`` later).
        self.rebind_after = rebind_after
        self.blackout = False
        #: Once ``down.forwarded`` reaches this, a blackout begins (a path that fails
        #: in the middle of a handshake); None: never.
        self.blackout_after_down: int | None = None
        #: Datagrams from clients to drop, by number (``up.seen``, from 1).
        self.drop_up: set[int] = set()
        #: Datagrams from the server to drop, by number (``down.seen``, from 1).
        self.drop_down: set[int] = set()
        self.rng = random.Random(seed)
        self.up = Counters()  # client -> server
        self.down = Counters()  # server -> client
        self.rebinds = 0
        self.port = 0
        self._listen: socket.socket | None = None
        self._maps: dict[tuple[str, int], _Mapping] = {}
        #: Delayed datagrams, in the order they came: one task sends each when it is due,
        #: so a delay never reorders (a task per datagram did: trio runs the tasks whose
        #: sleeps end together in an order of its own). Reordering is ``reorder``'s.
        self._due_in, self._due_out = trio.open_memory_channel[tuple[float, object, bytes]](
            float("inf"))

    # ------------------------------------------------------------------ control
    def rebind(self) -> None:
        """Give every client a new upstream source port (a NAT rebinding)."""
        for m in self._maps.values():
            old = m.sock
            m.sock = self._new_upstream()
            trio.lowlevel.notify_closing(old)
            old.close()
        self.rebinds += 1

    def set_blackout(self, on: bool) -> None:
        self.blackout = on

    @property
    def clients(self) -> int:
        """Client addresses seen: a QUIC client's handshakes, one socket each."""
        return len(self._maps)

    # ------------------------------------------------------------------ running
    def _new_upstream(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        return s

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listen.setblocking(False)
        listen.bind(("127.0.0.1", 0))
        self._listen = listen
        self.port = listen.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                if self.rebind_every:
                    nursery.start_soon(self._rebinder)
                nursery.start_soon(self._deliver)
                task_status.started(self.port)
                while True:
                    await trio.lowlevel.wait_readable(listen)
                    while True:
                        try:
                            data, addr = listen.recvfrom(65536)
                        except (BlockingIOError, InterruptedError):
                            break
                        m = self._maps.get(addr)
                        if m is None:
                            m = _Mapping(addr, self._new_upstream())
                            self._maps[addr] = m
                            nursery.start_soon(self._from_server, m)
                        self._impair(data, self.up, m, lambda d, m=m: self._send_up(m, d))
        finally:
            listen.close()
            for m in self._maps.values():
                m.sock.close()

    async def _rebinder(self) -> None:
        assert self.rebind_every is not None
        await trio.sleep(self.rebind_after)
        while True:
            await trio.sleep(self.rebind_every)
            self.rebind()

    async def _from_server(self, m: _Mapping) -> None:
        while True:
            sock = m.sock
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                continue  # rebound: wait on the new socket
            while True:
                try:
                    data, _ = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                self._impair(data, self.down, m, lambda d, m=m: self._send_down(m, d))

    def _send_up(self, m: _Mapping, data: bytes) -> None:
        try:
            m.sock.sendto(data, self.upstream)
        except OSError:
            pass

    def _send_down(self, m: _Mapping, data: bytes) -> None:
        assert self._listen is not None
        try:
            self._listen.sendto(data, m.client)
        except OSError:
            pass

    def _impair(self, data: bytes, counters: Counters, m: _Mapping, send) -> None:
        counters.seen += 1
        if counters is self.down and self.blackout_after_down is not None \
                and counters.forwarded >= self.blackout_after_down:
            self.blackout_after_down = None
            self.blackout = True
        if self.blackout or (counters is self.up and counters.seen in self.drop_up) \
                or (counters is self.down and counters.seen in self.drop_down) \
                or self.rng.random() < self.loss:
            counters.dropped += 1
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        if copies == 2:
            counters.duplicated += 1
        if self.rng.random() < self.reorder:
            # Hold this one back: it leaves after the next datagram in this direction.
            counters.reordered += 1
            m.held.append(data)
            return
        out = [data] * copies + m.held
        m.held = []
        for d in out:
            counters.forwarded += 1
            if self.delay > 0:
                self._due_in.send_nowait((trio.current_time() + self.delay, send, d))
            else:
                send(d)

    async def _deliver(self) -> None:
        async for due, send, data in self._due_out:
            await trio.sleep_until(due)
            send(data)  # type: ignore[operator]


class ImpairProcess:
    """The proxy as its own process, steered through its stdin (the mount under test is a
    process of its own too, and needs the proxy to run whatever the test is doing)."""

    def __init__(self, upstream_port: int, *, rebind_every: float | None = None) -> None:
        import subprocess
        import sys

        args = [sys.executable, "-m", "tests.support.impair", "--commands",
                "--upstream", f"127.0.0.1:{upstream_port}"]
        if rebind_every:
            args += ["--rebind-every", str(rebind_every)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.close()
            raise RuntimeError(f"the impairment proxy did not start: {line!r}")
        self.port = int(line.split()[1])

    def command(self, line: str) -> dict[str, object]:
        import json

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer: dict[str, object] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    """Run the proxy as its own process (benchmarks: so it does not share a CPU with the
    client it measures). Prints ``listening PORT`` once ready."""
    import argparse
    import json
    import os
    from dataclasses import asdict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, metavar="HOST:PORT")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--duplicate", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--rebind-every", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", action="store_true",
                    help="take commands on stdin (blackout on|off, rebind, stats); "
                         "exit when it closes")
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    proxy = UdpImpairProxy((host, int(port)), loss=args.loss, duplicate=args.duplicate,
                           reorder=args.reorder, delay=args.delay, seed=args.seed,
                           rebind_every=args.rebind_every)

    async def commands() -> None:
        # One command a line on stdin, each answered with a line once done:
        # "blackout on", "blackout off", "rebind", "stats".
        async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
            buf = b""
            while data := await stdin.receive_some():
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    words = line.decode().split()
                    if words[:1] == ["blackout"]:
                        proxy.set_blackout(words[1:] == ["on"])
                    elif words == ["rebind"]:
                        proxy.rebind()
                    print(json.dumps({"rebinds": proxy.rebinds, "blackout": proxy.blackout,
                                      "up": asdict(proxy.up), "down": asdict(proxy.down)}),
                          flush=True)

    async def run() -> None:
        async with trio.open_nursery() as n:
            listening = await n.start(proxy.run)
            print(f"listening {listening}", flush=True)
            if args.commands:
                await commands()
                n.cancel_scope.cancel()  # stdin closed: the test is done with us

    trio.run(run)


if __name__ == "__main__":
    main()
