"""Fields of /proc/PID/status: what FUSE does not tell about the process calling (its
supplementary groups, its pending signals)."""

from __future__ import annotations


def status_fields(pid: int, *names: str) -> dict[str, str]:
    """The fields ``names`` of process (or thread) ``pid``'s status, as text; empty when
    the process is gone."""
    found: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in names:
                    found[key] = value.strip()
    except OSError:
        return {}
    return found


__all__ = ["status_fields"]
