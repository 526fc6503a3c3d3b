"""Deterministic UIDs for Loupe's result objects and findings.

A result made again from the same input must carry the same UIDs, so that re-running an
analysis or re-sending its results never duplicates them on a PACS (an archive that receives
an instance it already holds keeps one copy). The UID is the "2.25." form of a name-based
(version 5, SHA-1) UUID: PS3.5 B.2 lets a UID be 2.25 followed by the decimal value of a
UUID, and a version 5 UUID is a fixed function of its namespace and name, so the same parts
always give the same UID and different parts collide only as SHA-1 does.
"""

from __future__ import annotations

import uuid

# Loupe's own namespace for name-based UUIDs (a random UUID, fixed once for the project).
_NAMESPACE = uuid.UUID("5d6a3a4e-8f0b-4c55-9c1e-2b7f4e1a9d30")


def derived_uid(kind: str, *parts: str) -> str:
    """The UID of `kind` (e.g. "ai-sr") for these parts (e.g. series UID, model, version)."""
    if not kind or any("\x1f" in p for p in (kind, *parts)):
        raise ValueError("kind must be non-empty and parts must not contain U+001F")
    name = "\x1f".join((kind, *parts))
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def tracking_uid(series_uid: str, model_id: str, model_version: str, finding_id: str) -> str:
    """The Tracking UID of an AI finding: the same finding of the same model version on the
    same series always gets the same one."""
    return derived_uid("tracking", series_uid, model_id, model_version, finding_id)


def ai_result_uids(
    series_uid: str, model_id: str, model_version: str, operating_point: str | None
) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the AI result SR of one series by one model
    version: one result series per (series, model, version); one instance per operating
    point shown (its content, the findings listed, depends on the point)."""
    series = derived_uid("ai-sr-series", series_uid, model_id, model_version)
    sop = derived_uid("ai-sr", series_uid, model_id, model_version, operating_point or "")
    return series, sop
