"""Credit and MessageId accounting (MS-SMB2 3.2.4.1.5, 3.2.5.1.4). Pure bookkeeping.

Each request consumes ``CreditCharge`` credits and as many consecutive MessageIds; the
server grants credits back in every response (interim ones included). A large read or write
charges one credit per started 64 KiB (LARGE_MTU).
"""

from __future__ import annotations

from quicfs.smb2.errors import ProtocolError

CREDIT_UNIT = 65536
#: Never hold more than this: a hostile grant cannot make our window unbounded.
MAX_CREDITS = 8192
#: How many credits we try to keep in hand, so many requests can be in flight at once.
TARGET_CREDITS = 512


def credit_charge(payload_size: int) -> int:
    """3.2.4.1.5: CreditCharge = (max(SendPayloadSize, ExpectedResponsePayloadSize) - 1)
    / 65536 + 1."""
    return 1 if payload_size <= 0 else (payload_size - 1) // CREDIT_UNIT + 1


class CreditWindow:
    """Credits in hand and the next MessageId to use."""

    def __init__(self, initial: int = 1) -> None:
        self.available = initial
        self.next_message_id = 0
        self.granted_total = 0

    def can_take(self, charge: int) -> bool:
        return self.available >= charge

    def take(self, charge: int) -> int:
        """Consume ``charge`` credits; returns the first of the MessageIds they cover."""
        if charge < 1:
            raise ValueError("a request charges at least one credit")
        if self.available < charge:
            raise ProtocolError(f"need {charge} credits, have {self.available}")
        first = self.next_message_id
        self.next_message_id += charge
        self.available -= charge
        return first

    def grant(self, credits: int) -> None:
        self.granted_total += credits
        self.available = min(self.available + credits, MAX_CREDITS)

    def request_for(self, charge: int) -> int:
        """The CreditRequest to send with a request of ``charge``: enough to stay near the
        target, never less than what the request spends."""
        return max(charge, min(TARGET_CREDITS - self.available + charge, TARGET_CREDITS))
