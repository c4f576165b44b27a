"""``quicfs stats MOUNTPOINT``: what the mount process knows of its connection."""

from __future__ import annotations

import json
from typing import Any

from quicfs import control


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render(s: dict[str, Any]) -> str:
    state = "connected" if s.get("connected") else "reconnecting"
    lines = [
        f"{s['mountpoint']}: {s['server']} over {str(s['transport']).upper()} to "
        f"{s['peer']} ({state})",
        f"  rtt {s.get('rtt_ms', 0):g} ms, congestion window {_size(s.get('cwnd', 0))}, "
        f"lost packets {s.get('lost_packets', 0)}",
        f"  sent {_size(s['bytes_sent'])}, received {_size(s['bytes_received'])}, "
        f"requests in flight {s['requests_in_flight']}, credits {s['credits']}",
        f"  SMB requests {s.get('smb_messages_sent', 0)} in {s.get('smb_sends', 0)} sends "
        "(a compound is one send)",
        f"  reconnects {s['reconnects']}, session renewals {s.get('session_renewals', 0)}, "
        f"migrations {s['migrations']}, "
        f"replays {s['replays']}, reopened handles {s['reopened_handles']} "
        f"({s['reopened_by_name']} by name), stale handles {s['stale_handles']}",
    ]
    if s["reconnects"]:
        lines.append(f"  last reconnect: {s['last_reconnect_seconds']:g} s "
                     f"(cause: {s['last_reconnect_cause']})")
    lines.append(f"  open files {s.get('open_files', 0)}, parked handles "
                 f"{s.get('parked_handles', 0)}, lease breaks {s.get('lease_breaks', 0)}")
    lines.append(f"  directory leases {s.get('directory_leases', 0)} held, "
                 f"{s.get('directory_leases_taken', 0)} taken, "
                 f"{s.get('directory_leases_broken', 0)} broken")
    if s.get("events"):
        lines.append("  recent events:")
        lines += [f"    {e}" for e in s["events"]]
    return "\n".join(lines)


def cmd_stats(mountpoint: str, as_json: bool) -> int:
    answer = control.ask(mountpoint, "stats")
    print(json.dumps(answer, indent=2, sort_keys=True) if as_json else render(answer))
    return 0


__all__ = ["cmd_stats", "render"]
