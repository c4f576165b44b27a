"""The test suite's Samba: the package's private-smbd launcher (quicfs/localsmb.py)."""

from quicfs.localsmb import PASSWORD, SHARES, USER, SambaError, SambaServer, free_port

__all__ = ["PASSWORD", "SHARES", "USER", "SambaError", "SambaServer", "free_port"]
