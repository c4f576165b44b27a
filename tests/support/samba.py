"""The test suite's Samba: the private-smbd launcher of the checkout (tools/localsmb.py)."""

from tools.localsmb import PASSWORD, SHARES, USER, SambaError, SambaServer, free_port

__all__ = ["PASSWORD", "SHARES", "USER", "SambaError", "SambaServer", "free_port"]
