"""The WAN benches' servers and mounts: Samba and `quicfs gateway` in the server namespace
of a bench/wan_net.py Topology, and quicfs mounts made from the client one.

    servers = Servers(net, ccs=["cubic"])
    servers.start()
    with servers.mounted("mount-quic", net.work / "mnt") as mnt:
        ...  # a host mount: every process sees it, its traffic crosses the link
    servers.stop(keep=Path("bench/results"))

Tools name the way a client goes: "quic" (through the gateway, qh3's CUBIC at both ends),
"quic-bbr" (our BBR on aioquic at both ends), "tcp" (straight to smbd); a "mount-" before
any of them is the same through a mount.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pytest  # noqa: E402

from bench.wan_net import SRV_ADDR, Topology  # noqa: E402
from tests.fuse.conftest import Mount  # noqa: E402
from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.samba import SambaServer  # noqa: E402


class Failed(Exception):
    pass


def cc_of(tool: str) -> str:
    return "bbr" if tool.endswith("-bbr") else "cubic"


class Servers:
    def __init__(self, net: Topology, ccs: list[str], *, name: str = "wan") -> None:
        self.net = net
        self.ccs = ccs
        self.name = name  # of the gateways' logs kept
        self.samba = SambaServer(Path(tempfile.mkdtemp(prefix="quicfs-wan-smb-")),
                                 # Every address of the server namespace (ours alone):
                                 # smbd skips a TUN device that has no carrier yet.
                                 extra_global={"bind interfaces only": "no"})
        self.gateways: dict[str, GatewayProcess] = {}

    def start(self) -> None:
        with self.net.inside(self.net.srv):
            self.samba.start()
            for cc in self.ccs:
                gw = GatewayProcess(self.net.work / f"gateway-{cc}", self.samba.port,
                                    extra_args=["--cc", cc])
                gw.host = SRV_ADDR
                gw.start()
                self.gateways[cc] = gw

    def stop(self, keep: Path) -> None:
        """Stop the servers; each gateway's log is kept in ``keep`` (the scratch goes)."""
        for cc, gw in self.gateways.items():
            gw.stop()
            if gw.log_path.exists():
                tail = "" if cc == "cubic" else f"-{cc}"
                shutil.copy(gw.log_path, keep / f"{self.name}-gateway{tail}.log")
        self.samba.__exit__()

    def share(self) -> Path:
        """The "plain" share's directory on the server's disk."""
        return self.samba.share_path("plain")

    def gateway_of(self, tool: str) -> GatewayProcess:
        return self.gateways[cc_of(tool)]

    def quicfs_opts(self, tool: str) -> tuple[str, str]:
        """(source, options) of the quicfs command or mount for ``tool``."""
        s = self.samba
        if "quic" in tool:
            g = self.gateway_of(tool)
            return f"//{SRV_ADDR}:{g.port}/plain", f"{g.options(s)},cc={cc_of(tool)}"
        return (f"//{SRV_ADDR}:{s.port}/plain",
                f"transport=tcp,username={s.username},password={s.password}")

    def mount(self, tool: str, mnt: Path, extra: str = "") -> Mount:
        """Mounted from the client namespace (its connection crosses the link), with
        mount options ``extra`` too; Failed if mount.quicfs fails. The caller unmounts
        (``__exit__``)."""
        mnt.mkdir(exist_ok=True)
        source, options = self.quicfs_opts(tool)
        mount = Mount(mnt, source, f"{options},{extra}" if extra else options)
        try:
            with self.net.inside(self.net.cli):
                mount.__enter__()
        except pytest.fail.Exception as exc:  # the fixture's way of failing
            raise Failed(str(exc)) from None
        return mount

    @contextlib.contextmanager
    def mounted(self, tool: str, mnt: Path, extra: str = "") -> Iterator[Path]:
        mount = self.mount(tool, mnt, extra)
        try:
            yield mnt
        finally:
            mount.__exit__()
