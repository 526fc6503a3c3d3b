"""Errors raised by the network layer. Each message says what failed and what to do about it."""

from __future__ import annotations


class DicomNetError(Exception):
    """Base class: a DICOM network operation failed; str() is one line for the user."""


class NodeUnreachable(DicomNetError):
    """No TCP connection, or the peer did not answer the association request."""


class AssociationRejected(DicomNetError):
    """The peer rejected or aborted the association (AE title not known, no common context)."""


class QueryFailed(DicomNetError):
    """C-FIND ended with a failure status."""


class MoveDestinationUnknown(DicomNetError):
    """The PACS does not know our AE title as a C-MOVE destination."""


class RetrieveFailed(DicomNetError):
    """C-MOVE / C-GET failed before any instance arrived."""


class PartialRetrieve(DicomNetError):
    """The retrieve ended with instances missing (failure, cancel, lost connection)."""

    def __init__(
        self,
        message: str,
        *,
        received: int,
        missing: int,
        cancelled: bool = False,
        result: object | None = None,
    ):
        super().__init__(message)
        self.received = received
        self.missing = missing
        self.cancelled = cancelled
        self.result = result  # the RetrieveResult, for callers that report details


class SendFailed(DicomNetError):
    """C-STORE to a node failed; the object stays queued in the outbox."""


class ArchiveError(Exception):
    """The local archive could not read or store an object; names the file and the reason."""
