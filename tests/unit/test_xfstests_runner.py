"""xfstests/runner.py reads ./check's output into per-test outcomes and a summary
(xfstests/outcomes.py, loaded through the runner as xfstests/run loads it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "xfstests" / "runner.py"
spec = importlib.util.spec_from_file_location("xfstests_runner", RUNNER)
assert spec is not None and spec.loader is not None
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)

# What ./check printed in a real run (abridged).
CHECK_OUTPUT = """\
FSTYP         -- fuse
MOUNT_OPTIONS -- -o transport=quic,nosubtype //127.0.0.1/scratch /mnt/quicfs-xfstests/scratch

generic/001         39s
generic/002         1s
generic/003        [expunged]
generic/004        [not run] O_TMPFILE is not supported
generic/035        - output mismatch (see /r/generic/035.out.bad)
    --- tests/generic/035.out	2026-11-30 11:44:42.659051693 +0000
    +++ /r/generic/035.out.bad	2026-11-30 11:57:20.669145997 +0000
generic/080        [failed, exit status 2]- output mismatch (see /r/generic/080.out.bad)
generic/050        [failed, exit status 1]no qualified output
generic/069         143s ...  150s
Ran: generic/001 generic/002 generic/035 generic/069 generic/080
Failures: generic/035 generic/080
"""


def test_check_output_is_classified_per_test():
    assert runner.classify(CHECK_OUTPUT) == {
        "generic/001": "passed", "generic/002": "passed", "generic/003": "expunged",
        "generic/004": "notrun", "generic/035": "failed", "generic/080": "failed",
        "generic/050": "failed", "generic/069": "passed",
    }


def test_summary_counts_and_lists_failures():
    results = runner.classify(CHECK_OUTPUT)
    summary = runner.summarize(results, 12.5, True, ["-g", "quick"])
    lines = summary.splitlines()
    assert lines[0] == "xfstests through quicfs over QUIC: ./check -g quick"
    assert lines[1].endswith("after 12.5 min (stopped at the time limit)")
    assert lines[2] == "passed 3 failed 3 not run 1 excluded 1"
    assert lines[4] == "failed: generic/035 generic/050 generic/080"
    assert "generic/004 notrun" in lines


def test_every_exclusion_gives_its_reason():
    for line in (RUNNER.parent / "exclude").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            test, _, reason = line.partition("#")
            assert test.strip().count("/") == 1 and reason.strip(), line


def test_summary_gives_why_a_test_did_not_run():
    log = CHECK_OUTPUT
    summary = runner.summarize(runner.classify(log), 1.0, False, [],
                               why=runner.notrun_reasons(log))
    assert "generic/004 notrun: O_TMPFILE is not supported" in summary.splitlines()
    assert "generic/001 passed" in summary.splitlines()


def test_comparison_names_what_the_reference_passed_and_quicfs_did_not():
    reference = runner.summarize(
        {"generic/001": "passed", "generic/003": "failed", "generic/020": "passed",
         "generic/025": "passed", "generic/035": "passed", "generic/091": "notrun"},
        20.0, False, [], "the passthrough reference")
    ours = runner.summarize(
        {"generic/001": "passed", "generic/003": "expunged", "generic/020": "expunged",
         "generic/025": "notrun", "generic/035": "failed", "generic/091": "passed"},
        50.0, False, [], why={"generic/025": "kernel doesn't support renameat2 syscall"})
    exclude = "# why\ngeneric/003  # atime\ngeneric/020  # a 65536-byte user.* value\n"
    assert runner.compare(reference, ours, exclude).splitlines() == [
        "passed by the reference: 4; by quicfs: 2",
        "",
        "passed by the reference, not by quicfs:",
        "  generic/020 excluded: a 65536-byte user.* value",
        "  generic/025 notrun: kernel doesn't support renameat2 syscall",
        "  generic/035 failed",
        "",
        "passed by quicfs, not by the reference:",
        "  generic/091 notrun",
    ]
