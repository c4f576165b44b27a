"""./check's output read into per-test outcomes (passed, failed, notrun, expunged), the
summary xfstests/run writes, and the comparison of a quicfs run with the reference's."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

_LINE = re.compile(r"^(?P<test>[a-z0-9]+/\d{3,})\b(?P<rest>.*)$")


def classify(log: str) -> dict[str, str]:
    """Per-test outcome from ./check's output: passed, failed, notrun or expunged."""
    results: dict[str, str] = {}
    for line in log.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        rest = m["rest"]
        if "[expunged]" in rest:
            results[m["test"]] = "expunged"
        elif "[not run]" in rest:
            results[m["test"]] = "notrun"
        elif "[failed" in rest or "output mismatch" in rest or "_check_" in rest:
            results[m["test"]] = "failed"
        elif re.search(r"\d+s$", rest.strip()):
            results[m["test"]] = "passed"
    return results


def notrun_reasons(log: str) -> dict[str, str]:
    """Why ./check did not run each test it skipped (the text after ``[not run]``)."""
    return {m["test"]: m["rest"].split("[not run]", 1)[1].strip()
            for m in map(_LINE.match, log.splitlines())
            if m and "[not run]" in m["rest"]}


def summarize(results: dict[str, str], minutes: float, timed_out: bool,
              args: Sequence[str], what: str = "quicfs over QUIC",
              why: dict[str, str] | None = None) -> str:
    counts = {k: sorted(t for t, v in results.items() if v == k)
              for k in ("passed", "failed", "notrun", "expunged")}
    lines = [f"xfstests through {what}: ./check {' '.join(args)}",
             f"finished {time.strftime('%Y-%m-%d %H:%M')} after {minutes:.1f} min"
             + (" (stopped at the time limit)" if timed_out else ""),
             "passed {} failed {} not run {} excluded {}".format(
                 *(len(counts[k]) for k in ("passed", "failed", "notrun", "expunged"))),
             ""]
    lines += [f"failed: {' '.join(counts['failed']) or '-'}", ""]
    why = why or {}
    lines += [f"{test} {status}" + (f": {why[test]}" if test in why else "")
              for test, status in sorted(results.items())]
    return "\n".join(lines) + "\n"


_RESULT = re.compile(r"^(?P<test>[a-z0-9]+/\d{3,}) (?P<status>\w+)(?:: (?P<why>.*))?$")


def compare(reference: str, ours: str, exclude: str) -> str:
    """What the passthrough reference passed and quicfs did not, each with quicfs's
    reason (its exclusion or why xfstests did not run it), from two summaries."""
    def outcomes(summary: str) -> dict[str, tuple[str, str]]:
        return {m["test"]: (m["status"], m["why"] or "")
                for m in map(_RESULT.match, summary.splitlines()) if m}

    excluded = {}
    for line in exclude.splitlines():
        test, _, reason = line.partition("#")
        if test.strip():
            excluded[test.strip()] = reason.strip()

    def passed(results: dict[str, tuple[str, str]]) -> set[str]:
        return {test for test, (status, _) in results.items() if status == "passed"}

    ref, our = outcomes(reference), outcomes(ours)
    lines = [f"passed by the reference: {len(passed(ref))}; by quicfs: {len(passed(our))}",
             "", "passed by the reference, not by quicfs:"]
    for test in sorted(passed(ref) - passed(our)):
        status, why = our.get(test, ("not in the quicfs run", ""))
        if test in excluded:
            status, why = "excluded", excluded[test]
        lines.append(f"  {test} {status}" + (f": {why}" if why else ""))
    lines += ["", "passed by quicfs, not by the reference:"]
    lines += [f"  {test} {ref.get(test, ('not in the reference run', ''))[0]}"
              for test in sorted(passed(our) - passed(ref))]
    return "\n".join(lines) + "\n"
