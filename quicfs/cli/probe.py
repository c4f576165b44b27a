"""``quicfs probe HOST[:PORT]``: parse, call the library (quicfs/probe/), print the
report; its exit code says which transports are ready (docs/probe.md)."""

from __future__ import annotations

import argparse


def cmd_probe(args: argparse.Namespace) -> int:
    import trio

    from quicfs.cert import check_files
    from quicfs.options import parse_options
    from quicfs.probe import parse_target, probe, render_text

    host, port = parse_target(args.server)
    opts = parse_options(args.options)
    check_files(cert=opts.cert, key=opts.key, cafile=opts.cafile)
    report = trio.run(probe, host, port, opts)
    print(report.to_json() if args.json else render_text(report), flush=True)
    return report.exit_code
