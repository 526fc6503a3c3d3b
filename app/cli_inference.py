"""Command-line commands of the AI engine (`analyze`, `evaluate`, `models`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

AddCommand = Callable[[str, Callable[..., int], str], argparse.ArgumentParser]

EXIT_OK = 0
EXIT_ERROR = 1


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _model_errors(func: Callable[[Any, argparse.Namespace], int]) -> Callable[..., int]:
    """A refused model (broken manifest, altered file) is one line on stderr and exit 1;
    bad input stays a ValueError (exit 2 in app.cli)."""

    def run(settings: Any, args: argparse.Namespace) -> int:
        from inference.errors import ManifestError, ModelError

        try:
            return func(settings, args)
        except ManifestError as exc:
            print(f"loupe: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except ModelError as exc:
            print(f"loupe: {exc}", file=sys.stderr)
            return EXIT_ERROR

    return run


def _series_from_args(settings: Any, args: argparse.Namespace) -> list[Any]:
    from inference.series_input import group_series

    if args.study_uid and args.paths:
        raise ValueError("give either --study-uid or paths, not both")
    if args.study_uid:
        from dicom_net.archive import LocalArchive

        archive = LocalArchive(settings.storage)
        try:
            paths = [r.path for r in archive.instances(study_instance_uid=args.study_uid)]
        finally:
            archive.close()
        if not paths:
            raise ValueError(f"study {args.study_uid} is not in the local archive")
        return group_series(paths)
    if not args.paths:
        raise ValueError("give --study-uid UID or a path to a series")
    return group_series([Path(p) for p in args.paths])


def _applicable(engine: Any, groups: list[Any], model_id: str | None) -> list[Any]:
    from inference.errors import InputNotApplicable, ModelError

    out = []
    reasons = []
    for g in groups:
        try:
            engine.model_for(g.modality, model_id)
        except (InputNotApplicable, ModelError) as exc:
            if model_id is not None and isinstance(exc, ModelError):
                raise
            reasons.append(f"{g.modality or '?'} series {g.series_instance_uid}: {exc}")
            continue
        out.append(g)
    if not out:
        raise ValueError("nothing to analyse: " + "; ".join(reasons))
    return out


def _point_for(a: Any, args: argparse.Namespace) -> Any:
    """The analysis at the operating point the command line asks for (default: the model's)."""
    if getattr(args, "all_candidates", False):
        return a.at(None)
    name = getattr(args, "operating_point", None)
    if name:
        return a.at(a.model.operating_point(name))
    return a


def _series_json(a: Any, g: Any) -> dict[str, Any]:
    p = a.point
    point = p.as_json()
    if p.name == "all candidates":
        point["threshold"] = round(a.model.candidate_threshold, 4)
    return {
        "series_uid": g.series_instance_uid,
        "modality": g.modality,
        "model": a.model.id,
        "model_version": a.model.version,
        "device": a.session.device,
        "operating_point": point,
        "findings": len(a.findings),
        "candidates": len(a.candidates),
        # The model's max_findings cut candidates at or above the operating point.
        "max_findings_reached": a.cap_hides_findings,
        "warnings": list(a.warnings),
    }


def _frame_rows(a: Any) -> list[dict[str, Any]]:
    """One entry per frame: every frame scored, with stage 1's verdict beside it."""
    rows = []
    for fa in a.endoscopy.frames:
        p = fa.lesion_probability
        rows.append(
            {
                "series_uid": fa.ref.series_instance_uid,
                "sop_instance_uid": fa.ref.sop_instance_uid,
                "frame": fa.ref.frame,
                "lesion_probability": round(float(p), 4),
                "informative": bool(fa.informative),
                "informative_probability": round(float(fa.informative_probability), 4),
                "at_operating_point": bool(fa.informative and p >= a.point.threshold),
            }
        )
    return rows


@_model_errors
def cmd_analyze(settings: Any, args: argparse.Namespace) -> int:
    from inference.engine import InferenceEngine

    results = None
    if args.study_uid and not args.again:
        from inference.result_store import ResultStore

        # Archived studies: the result is kept for the workstation and reused when the same
        # model version already analysed the same input.
        results = ResultStore(settings.storage / "analyses")
    engine = InferenceEngine(results=results)
    groups = _applicable(engine, _series_from_args(settings, args), args.model)
    rows: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    sr_files: list[Path] = []
    if args.send and not args.sr:
        raise ValueError("--send needs --sr OUT.dcm (the SR to send)")
    if args.all_candidates and args.operating_point:
        raise ValueError("give either --all-candidates or --operating-point, not both")
    for g in groups:
        a = _point_for(engine.analyze_series(g, model_id=args.model), args)
        device = a.session.describe()
        head = (
            f"{a.model.id} {a.model.version} on {device}: {g.modality} series "
            f"{g.series_instance_uid}: {a.summary()}"
        )
        print(head, file=sys.stderr if args.json else sys.stdout)
        for w in a.warnings:
            print(f"warning: {w}", file=sys.stderr)
        series.append(_series_json(a, g))
        for f in a.findings:
            d = f.as_json()
            d["device"] = a.session.device
            d["operating_point"] = a.point.name
            rows.append(d)
            if not args.json:
                print("  " + _finding_line(f))
        if a.endoscopy is not None:
            frames.extend(_frame_rows(a))
            if not args.json:
                dropped = [x for x in a.endoscopy.frames if not x.informative]
                print(
                    f"  {len(a.endoscopy.frames)} frame(s) scored; {len(dropped)} of them "
                    "uninformative by stage 1"
                )
        store = None
        if args.study_uid:
            # Kept for review: the workstation and `loupe report` start from these.
            from core.review import ReviewStore

            store = ReviewStore(settings.storage / "review.sqlite")
            store.remember_ai_findings(g.series_instance_uid, list(a.findings))
        if args.sr and a.findings:
            from app.reporting import installation_uid

            path = _write_ai_sr(
                a, g, Path(args.sr), len(groups) > 1, installation_uid(settings.storage)
            )
            sr_files.append(path)
            if store is not None:
                from app.reporting import keep_report
                from dicom_net.archive import LocalArchive

                keep_report(
                    LocalArchive(settings.storage), store, path, g.series_instance_uid, "ai"
                )
    if args.json:
        out: dict[str, Any] = {
            "operating_point": series[0]["operating_point"] if series else None,
            "findings": rows,
            "series": series,
        }
        if frames:
            out["frames"] = frames
        _print_json(out)
    if args.sr and not sr_files:
        raise ValueError("no findings: no AI result SR written")
    for path in sr_files:
        print(f"wrote AI result SR {path}", file=sys.stderr)
    if args.send:
        from dicom_net.archive import LocalArchive
        from dicom_net.outbox import Outbox, send_now

        node = settings.node(args.send)
        send_now(Outbox(LocalArchive(settings.storage)), settings.local, node, sr_files)
        print(f"sent {len(sr_files)} SR(s) to {node.describe()}", file=sys.stderr)
    return EXIT_OK


def _write_ai_sr(a: Any, g: Any, out: Path, several: bool, device_uid: str) -> Path:
    """TID 1500 Comprehensive 3D SR of one series' findings, referencing its images."""
    import pydicom

    from core.reports.ai_sr import build_ai_sr
    from core.uids import ai_result_uids

    if several:
        out = out.with_name(f"{out.stem}-{g.series_instance_uid}{out.suffix or '.dcm'}")
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in g.paths]
    # Same series, model version and point: same UIDs, so a re-run or re-send does not
    # duplicate the result on the PACS.
    sr_series, sr_sop = ai_result_uids(
        g.series_instance_uid, a.model.id, a.model.version, a.point.name
    )
    sr = build_ai_sr(
        a.findings,
        source_images=headers,
        model_id=a.model.id,
        model_version=a.model.version,
        model_name=a.model.id,
        operating_point=(a.point.name, a.point.threshold),
        device_uid=device_uid,
        series_instance_uid=sr_series,
        sop_instance_uid=sr_sop,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(out)
    return out


def _finding_line(f: Any) -> str:
    if f.center_mm is not None:
        x, y, z = f.center_mm
        d = "?" if f.diameter_mm is None else f"{f.diameter_mm:.1f}"
        kind = f.attributes.get("type", "")
        return (
            f"{f.finding_id}  p={f.probability:.3f}  x={x:.1f} y={y:.1f} z={z:.1f} mm  "
            f"d={d} mm  slice {f.slice_index}  {kind}".rstrip()
        )
    return (
        f"{f.finding_id}  p={f.probability:.3f}  instance {f.sop_instance_uid} frame {f.frame}"
        f"  region {f.region}"
    )


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [h.strip() for h in f.readline().strip().split(",")]
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None


def _write_points(out: Path, model: Any, points: Any, evaluation: dict[str, Any]) -> None:
    doc = {
        "model": model.id,
        "model_version": model.version,
        "operating_points": [p.as_json() for p in points],
        "evaluation": evaluation,
        "note": "measured on this site's annotated data; copy operating_points into the "
        "model's manifest.json to make them the workstation's",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(points)} operating point(s) to {out}", file=sys.stderr)


@_model_errors
def cmd_evaluate(settings: Any, args: argparse.Namespace) -> int:
    """Nodules: LUNA16 FROC/CPM over every candidate and the figures at the model's default
    operating point. Frames: AUC over every labelled frame, sensitivity and specificity at the
    default point. `--operating-points OUT.json` measures operating points on this data."""
    from inference.series_input import group_series

    annotations_path = Path(args.annotations)
    header = _csv_header(annotations_path)
    groups = group_series([Path(p) for p in args.series_dirs])
    if "sop_instance_uid" in header:
        return _evaluate_frames(args, annotations_path, groups)
    return _evaluate_nodules(args, annotations_path, groups)


def _evaluate_nodules(args: argparse.Namespace, path: Path, groups: list[Any]) -> int:
    from inference.engine import InferenceEngine
    from inference.froc import at_threshold, candidates_from_findings, froc, read_annotations
    from inference.operating_points import nodule_operating_points

    annotations = read_annotations(path)
    engine = InferenceEngine()
    groups = [g for g in groups if g.modality == "CT"]
    if not groups:
        raise ValueError("no CT series found in the given folders")
    candidates = []
    model = None
    for g in groups:
        a = engine.analyze_series(g, model_id=args.model)
        model = a.model
        candidates.extend(a.candidates)
        print(f"{g.series_instance_uid}: {len(a.candidates)} candidate(s)", file=sys.stderr)
    assert model is not None
    res = froc(
        candidates_from_findings(candidates),
        annotations,
        [g.series_instance_uid for g in groups],
        min_diameter_mm=args.min_diameter,
    )
    point = model.default_operating_point
    sens, fps = at_threshold(res, point.threshold)
    at_point = {
        "operating_point": point.name,
        "threshold": point.threshold,
        "sensitivity": round(sens, 4),
        "false_positives_per_scan": round(fps, 4),
    }
    if args.operating_points:
        data = f"{res.scans} scans, {res.nodules} nodules >= {args.min_diameter:g} mm ({path.name})"
        _write_points(
            Path(args.operating_points),
            model,
            nodule_operating_points(res, data),
            {**res.as_json(), "at_default_operating_point": at_point},
        )
    if args.json:
        _print_json({**res.as_json(), "at_default_operating_point": at_point})
        return EXIT_OK
    print(f"scans {res.scans}, nodules >= {args.min_diameter:g} mm: {res.nodules}")
    for r, s in res.sensitivities.items():
        print(f"  sensitivity at {r:g} FP/scan: {s:.3f}")
    print(f"CPM {res.cpm:.3f}")
    print(
        f"at '{point.name}' (p >= {point.threshold:.2f}): sensitivity {sens:.3f}, {fps:.2f} FP/scan"
    )
    return EXIT_OK


def _evaluate_frames(args: argparse.Namespace, path: Path, groups: list[Any]) -> int:
    import dataclasses

    from inference.engine import InferenceEngine
    from inference.frame_evaluation import (
        evaluate_frames,
        frame_operating_points,
        read_frame_labels,
    )

    labels = read_frame_labels(path)
    engine = InferenceEngine()
    results = []
    model = None
    for g in groups:
        if g.modality == "CT":
            continue
        a = engine.analyze_series(g, model_id=args.model)
        if a.endoscopy is None:
            continue
        model = a.model
        results.append(a.endoscopy)
        print(f"{g.series_instance_uid}: {len(a.endoscopy.frames)} frame(s)", file=sys.stderr)
    if not results or model is None:
        raise ValueError("no endoscopy series found in the given folders")
    merged = dataclasses.replace(results[0], frames=[f for r in results for f in r.frames])
    point = model.default_operating_point
    ev = evaluate_frames(labels, merged, point)
    ev["labelled_frames_missing"] = [list(k) for k in ev["labelled_frames_missing"]]
    if args.operating_points:
        data = f"{ev['frames_scored']} labelled frames ({path.name})"
        _write_points(
            Path(args.operating_points),
            model,
            frame_operating_points(labels, merged, data=data),
            ev,
        )
    if args.json:
        _print_json(ev)
        return EXIT_OK
    auc = (
        "n/a (needs frames with and without a lesion)" if ev["auc"] is None else f"{ev['auc']:.3f}"
    )
    print(
        f"frames scored {ev['frames_scored']} ({ev['positives']} with a lesion, "
        f"{ev['negatives']} without); lesion AUC {auc}"
    )
    sens = "n/a" if ev["sensitivity"] is None else f"{ev['sensitivity']:.3f}"
    spec = "n/a" if ev["specificity"] is None else f"{ev['specificity']:.3f}"
    print(f"at '{point.name}' (p >= {point.threshold:.2f}): sensitivity {sens}, specificity {spec}")
    if ev["labelled_frames_missing"]:
        print(
            f"warning: {len(ev['labelled_frames_missing'])} labelled frame(s) not found",
            file=sys.stderr,
        )
    return EXIT_OK


@_model_errors
def cmd_models(settings: Any, args: argparse.Namespace) -> int:
    from inference.registry import ModelRegistry

    reg = ModelRegistry()
    if args.action == "verify":
        results = reg.verify(args.ids)
        if args.json:
            _print_json([{"model": n, "status": s} for n, s in results])
        else:
            for n, s in results:
                print(f"{n}: {s}")
        if not results:
            raise ValueError(f"no models found in {reg.root}")
        return EXIT_OK if all(s == "ok" for _, s in results) else EXIT_ERROR
    entries = reg.entries()
    if args.json:
        _print_json(
            [
                {
                    "id": e.manifest.id,
                    "version": e.manifest.version,
                    "task": e.manifest.task.value,
                    "modality": list(e.manifest.applies_to.modalities),
                    "directory": str(e.directory),
                }
                if e.manifest
                else {"directory": str(e.directory), "error": e.error}
                for e in entries
            ]
        )
        return EXIT_OK
    for e in entries:
        if e.manifest:
            m = e.manifest
            print(f"{m.id}  {m.version}  {m.task.value}  {'/'.join(m.applies_to.modalities)}")
        else:
            print(f"{e.directory.name}  BROKEN: {e.error}")
    return EXIT_OK


def register_inference_commands(add: AddCommand) -> None:
    """Add the engine's subcommands to the `loupe` parser."""
    sp = add("analyze", cmd_analyze, "run the AI models on a series (local archive or files)")
    sp.add_argument("paths", nargs="*", help="DICOM files or folders")
    sp.add_argument("--study-uid", help="a study in the local archive")
    sp.add_argument("--model", help="model id (default: the installed model for the modality)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument(
        "--operating-point",
        metavar="NAME",
        help="show findings at this operating point of the model (default: its default)",
    )
    sp.add_argument(
        "--all-candidates",
        action="store_true",
        help="every candidate the model kept, whatever its probability (for FROC)",
    )
    sp.add_argument("--sr", metavar="OUT.dcm", help="write the AI result SR (TID 1500)")
    sp.add_argument(
        "--again",
        action="store_true",
        help="run the model even if this version already analysed the series "
        "(archived studies keep their analyses in STORAGE/analyses)",
    )
    sp.add_argument("--send", metavar="NODE", help="C-STORE the SR to a node (via the outbox)")
    sp = add(
        "evaluate",
        cmd_evaluate,
        "validate a model on annotated data: nodule FROC/CPM on CT, or frame AUC on endoscopy",
    )
    sp.add_argument(
        "annotations",
        help="CSV: seriesuid,coordX,coordY,coordZ,diameter_mm (nodules) or "
        "sop_instance_uid,frame,lesion (frames)",
    )
    sp.add_argument("series_dirs", nargs="+")
    sp.add_argument("--model")
    sp.add_argument("--min-diameter", type=float, default=4.0, help="nodules counted (mm)")
    sp.add_argument(
        "--operating-points",
        metavar="OUT.json",
        help="measure operating points on this data and write them (for the manifest)",
    )
    sp.add_argument("--json", action="store_true")
    sp = add("models", cmd_models, "list or verify the installed AI models")
    sp.add_argument("action", choices=("list", "verify"))
    sp.add_argument("ids", nargs="*")
    sp.add_argument("--json", action="store_true")
