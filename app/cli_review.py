"""`loupe review`: the review of a study's AI findings without the window (scripts, QA, tests).

    loupe review --study-uid UID [--series-uid UID] [--json]
    loupe review --study-uid UID --accept ID... --reject ID... [--comment ID TEXT]

Lists the findings of the analysed series with the number the workstation shows, status,
probability and position; records decisions through the same durable review store and audit
log as the window (core.review.ReviewSession), as the settings' user. ID is a finding_id or
its number.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.findings import Finding, FindingSet, ReviewStatus, numbers


def _row(f: Finding, number: int) -> dict[str, Any]:
    d = f.as_json()
    d["number"] = number
    if f.status is ReviewStatus.ADDED:
        d["probability"] = None  # the reader's, not the AI's
    if f.comment:
        d["comment"] = f.comment
    return d


def _resolve(ids: list[str], by_number: dict[int, str], known: set[str]) -> list[str]:
    out = []
    for raw in ids:
        if raw in known:
            out.append(raw)
            continue
        key = raw.lstrip("#")
        if key.isdigit() and int(key) in by_number:
            out.append(by_number[int(key)])
            continue
        raise ValueError(
            f"no finding {raw!r} in this review: give a finding_id or a number from "
            "`loupe review --study-uid UID`"
        )
    return out


def cmd_review(settings: Any, args: argparse.Namespace) -> int:
    from app.reporting import ReportError, series_of_study
    from core.review import ReviewSession, ReviewStore
    from dicom_net.archive import LocalArchive

    archive = LocalArchive(settings.storage)
    store = ReviewStore(settings.storage / "review.sqlite")
    try:
        series_uid = args.series_uid or series_of_study(archive, store, args.study_uid)
    except ReportError as exc:
        raise ValueError(str(exc)) from exc
    restored = store.restore(series_uid)
    if not restored:
        raise ValueError(
            f"series {series_uid} has no AI findings to review: run `loupe analyze "
            f"--study-uid {args.study_uid}` first"
        )
    fs = FindingSet(restored)
    number = numbers(restored)
    by_number = {n: fid for fid, n in number.items()}
    accept = _resolve(args.accept or [], by_number, set(number))
    reject = _resolve(args.reject or [], by_number, set(number))
    both = set(accept) & set(reject)
    if both:
        raise ValueError(f"finding(s) both accepted and rejected: {sorted(both)}")
    comments = [(_resolve([i], by_number, set(number))[0], t) for i, t in args.comment or []]
    session = ReviewSession(store, fs, series_uid, settings.user)
    for fid in accept:
        session.accept(fid)
    for fid in reject:
        session.reject(fid)
    for fid, text in comments:
        session.comment(fid, text)
    findings = sorted(fs, key=lambda f: number[f.finding_id])
    if args.json:
        out = {
            "study_uid": args.study_uid,
            "series_uid": series_uid,
            "findings": [_row(f, number[f.finding_id]) for f in findings],
        }
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    for f in findings:
        p = "reader" if f.status is ReviewStatus.ADDED else f"p={f.probability:.3f}"
        where = (
            "x={:.1f} y={:.1f} z={:.1f} mm".format(*f.center_mm)
            if f.center_mm is not None
            else f"instance {f.sop_instance_uid} frame {f.frame}"
        )
        print(f"#{number[f.finding_id]:<3} {f.status.value:<9} {p:<8} {where}  {f.finding_id}")
    pending = sum(f.status is ReviewStatus.PENDING for f in findings)
    done = len(accept) + len(reject) + len(comments)
    print(
        f"{len(findings)} findings, {pending} pending"
        + (f"; {done} decision(s) recorded as {settings.user}" if done else ""),
        file=sys.stderr,
    )
    return 0


def register(add: Any) -> None:
    sp = add("review", cmd_review, "list or decide a study's AI findings without the window")
    sp.add_argument("--study-uid", required=True)
    sp.add_argument("--series-uid", help="the analysed series (default: the study's)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--accept", nargs="+", metavar="ID", help="finding_id or number")
    sp.add_argument("--reject", nargs="+", metavar="ID", help="finding_id or number")
    sp.add_argument(
        "--comment", nargs=2, action="append", metavar=("ID", "TEXT"), help="comment a finding"
    )
