"""What the checkout has beside the library, and the wheel does not: a private Samba
(localsmb.py, which adds a Unix user and knows a fixed test password), it and our gateway
on loopback (servers.py), unmounting what they mounted (mounts.py), `quicfs demo`
(demo.py), and the man pages made from their Markdown (manpage.py, `make man`). The
tests, the benchmarks and xfstests/run import them from here; pyproject.toml packages
``quicfs`` only."""
