"""What one caller can hold of Loupe's storage receiver, and for how long.

Three limits, the same on both receive paths (fast_store.py and pynetdicom's acceptor):

- ARTIM (PS3.8 9.1.5, the Association Request/Reject/Release timer): a connection must have
  delivered its whole A-ASSOCIATE-RQ within `artim_s` of being accepted, or it is closed. A
  connection that has not yet asked for an association holds no association slot.
- The association limit: at most `max_associations` associations at once, counted across both
  paths by one `AssociationSlots`. A slot is taken when a well-formed A-ASSOCIATE-RQ is about
  to be answered and given back as soon as the association no longer exists (released,
  aborted, rejected, connection lost), not when its thread has finished closing the socket.
  A request beyond the limit gets A-ASSOCIATE-RJ "transient, local limit exceeded".
- The PDU deadline: once associated, each PDU must arrive completely within `pdu_timeout_s`
  of the end of the previous one (silence counts too), or the association is aborted. A
  per-read timeout is not enough: a peer sending one byte every few seconds never trips it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

MAX_ASSOCIATIONS = 10
# PS3.8 leaves ARTIM's value to the implementation; 10 s is ample for a request sent in one
# write on a LAN, and bounds how long a connection that never asks can keep a thread.
ARTIM_TIMEOUT_S = 10.0
# Also the network timeout of the associations we request (ae.NETWORK_TIMEOUT_S). Kept here,
# free of pynetdicom, so that the settings can import this module at no cost.
PDU_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ReceiverLimits:
    """The storage receiver's association limit and timeouts (seconds)."""

    max_associations: int = MAX_ASSOCIATIONS
    artim_s: float = ARTIM_TIMEOUT_S
    pdu_timeout_s: float = PDU_TIMEOUT_S

    def __post_init__(self) -> None:
        if isinstance(self.max_associations, bool) or not isinstance(self.max_associations, int):
            raise TypeError(f"max_associations must be int, not {self.max_associations!r}")
        if self.max_associations < 1:
            raise ValueError(f"max_associations must be at least 1, not {self.max_associations}")
        for name in ("artim_s", "pdu_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class AssociationSlots:
    """The association count shared by both receive paths."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._used = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._used

    def acquire(self) -> bool:
        """Take a slot; False when all `limit` are taken."""
        with self._lock:
            if self._used >= self.limit:
                return False
            self._used += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._used <= 0:
                raise RuntimeError("association slot released twice")
            self._used -= 1


class SlotHolder:
    """One association's claim on a slot: released at most once, from whichever thread sees
    the association end first (pynetdicom's events or the handler thread)."""

    def __init__(self, slots: AssociationSlots):
        self._slots = slots
        self._lock = threading.Lock()
        self._held = False

    def acquire(self) -> bool:
        with self._lock:
            if self._held:
                return True
            self._held = self._slots.acquire()
            return self._held

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._slots.release()
