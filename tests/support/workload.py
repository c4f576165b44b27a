"""A paced writer and reader for fault tests and benchmarks, each its own process.

    python -m tests.support.workload write FILE --mib 500 --rate 64 --out RESULT.json
    python -m tests.support.workload read FILE --rate 64 --out RESULT.json

The writer writes ``--mib`` MiB of a reproducible pattern (every 4 KiB page carries its
own offset, so a page landing in the wrong place or twice changes the checksum), fsyncs
and closes; the reader reads a file to its end. Both go at most ``--rate`` MiB/s, so a
fault lands while they run, and record when each MiB completed (CLOCK_MONOTONIC, which
every process on the machine shares): the longest gap after a fault is the stall it
caused. The result file holds the sha256, the times, and the error if one ended the run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

MIB = 1024 * 1024
PAGE = 4096
_BASE = random.Random(5).randbytes(MIB)


def chunk(index: int) -> bytes:
    """MiB number ``index`` of the pattern."""
    data = bytearray(_BASE)
    offset = index * MIB
    for page in range(0, MIB, PAGE):
        struct.pack_into("<Q", data, page, offset + page)
    return bytes(data)


def pattern_sha256(mib: int) -> str:
    h = hashlib.sha256()
    for i in range(mib):
        h.update(chunk(i))
    return h.hexdigest()


def write_pattern(path: str, mib: int) -> str:
    """The pattern written straight to ``path`` (the server's side of a share)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(mib):
            data = chunk(i)
            h.update(data)
            f.write(data)
    return h.hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(4 * MIB):
            h.update(data)
    return h.hexdigest()


@dataclass
class Result:
    sha256: str = ""
    bytes: int = 0
    started: float = 0.0
    #: CLOCK_MONOTONIC when each MiB completed.
    times: list[float] = field(default_factory=list)
    error: str = ""
    errno: int = 0

    def stall_end(self, t: float) -> float:
        """When bytes flowed again after ``t``: the end of the longest gap between MiBs
        completed after ``t`` (a gap counted from ``t`` when it began before)."""
        times = [self.started, *self.times]
        best, end = 0.0, t
        for a, b in itertools.pairwise(times):
            if b > t and b - max(a, t) > best:
                best, end = b - max(a, t), b
        return end


def load(path: str) -> Result:
    with open(path) as f:
        return Result(**json.load(f))


def _pace(started: float, done_mib: int, rate: float) -> None:
    due = started + done_mib / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _write(path: str, mib: int, rate: float, result: Result) -> None:
    h = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(mib):
            data = chunk(i)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            h.update(data)
            result.bytes += len(data)
            result.times.append(time.monotonic())
            _pace(result.started, i + 1, rate)
        os.fsync(fd)
    finally:
        os.close(fd)
    result.sha256 = h.hexdigest()


def _read(path: str, rate: float, result: Result) -> None:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        while data := os.read(fd, MIB):
            h.update(data)
            result.bytes += len(data)
            result.times.append(time.monotonic())
            _pace(result.started, result.bytes // MIB, rate)
    finally:
        os.close(fd)
    result.sha256 = h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["write", "read"])
    ap.add_argument("path")
    ap.add_argument("--mib", type=int, default=500)
    ap.add_argument("--rate", type=float, default=64.0, help="MiB/s at most")
    ap.add_argument("--out", required=True, help="where the result (JSON) goes")
    args = ap.parse_args()
    result = Result(started=time.monotonic())
    code = 0
    try:
        if args.action == "write":
            _write(args.path, args.mib, args.rate, result)
        else:
            _read(args.path, args.rate, result)
    except OSError as exc:
        result.error, result.errno = f"{exc.strerror or exc}", exc.errno or 0
        code = 1
    with open(args.out, "w") as f:
        json.dump(asdict(result), f)
    return code


if __name__ == "__main__":
    sys.exit(main())
