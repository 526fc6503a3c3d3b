"""`loupe` command line: the headless contract used by users' scripts, tests and the GUI's
own wiring. Exit 0 on success; otherwise one clear line on stderr and a non-zero code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.cli_inference import register_inference_commands
from app.settings import Settings, SettingsError, load_settings
from app.version import __version__
from dicom_net.errors import (
    ArchiveError,
    AssociationRejected,
    DicomNetError,
    MoveDestinationUnknown,
    NodeUnreachable,
    PartialRetrieve,
    SendFailed,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REJECTED = 4
EXIT_MOVE_DESTINATION = 5
EXIT_PARTIAL = 6
EXIT_NOT_DELIVERED = 7

_EXIT_FOR: list[tuple[type[BaseException], int]] = [
    (NodeUnreachable, EXIT_UNREACHABLE),
    (AssociationRejected, EXIT_REJECTED),
    (MoveDestinationUnknown, EXIT_MOVE_DESTINATION),
    (PartialRetrieve, EXIT_PARTIAL),
    (SendFailed, EXIT_NOT_DELIVERED),
    (SettingsError, EXIT_USAGE),
    (ValueError, EXIT_USAGE),
    (DicomNetError, EXIT_ERROR),
    (ArchiveError, EXIT_ERROR),
]


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _archive(settings: Settings) -> Any:
    from dicom_net.archive import LocalArchive

    return LocalArchive(settings.storage)


# -- commands ---------------------------------------------------------------------------------
def cmd_nodes(settings: Settings, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(
            [
                {
                    "name": n.name,
                    "ae_title": n.ae_title,
                    "host": n.host,
                    "port": n.port,
                    "retrieve": n.retrieve.value,
                    "tls": n.tls is not None,
                }
                for n in settings.nodes
            ]
        )
        return EXIT_OK
    print(f"local: {settings.local.ae_title} port {settings.local.port} storage {settings.storage}")
    if not settings.nodes:
        print("no nodes configured (add [[nodes]] to the settings file)")
        return EXIT_OK
    _table(
        [
            (n.name, n.ae_title, n.host, str(n.port), n.retrieve.value, "yes" if n.tls else "no")
            for n in settings.nodes
        ],
        ("NAME", "AE TITLE", "HOST", "PORT", "RETRIEVE", "TLS"),
    )
    return EXIT_OK


def cmd_echo(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_net.query import echo

    node = settings.node(args.node)
    ms = echo(settings.local, node)
    print(f"C-ECHO {node.describe()}: success in {ms:.0f} ms")
    return EXIT_OK


def cmd_find(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_net.query import RETURN_KEYS, FindQuery, find

    node = settings.node(args.node)
    query = FindQuery(
        level=args.level,
        patient_id=args.patient_id or "",
        patient_name=args.patient_name or "",
        modality=args.modality or "",
        study_date=args.study_date or "",
        study_instance_uid=args.study_uid or "",
        series_instance_uid=args.series_uid or "",
    )
    rows = find(settings.local, node, query)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    keys = RETURN_KEYS[args.level]
    _table([[str(r.get(k, "") if r.get(k) is not None else "") for k in keys] for r in rows], keys)
    print(f"{len(rows)} {args.level}{'' if len(rows) == 1 else ' results'}", file=sys.stderr)
    return EXIT_OK


def _progress_printer(enabled: bool) -> Callable[[Any], None] | None:
    if not enabled:
        return None

    def show(p: Any) -> None:
        remaining = "?" if p.remaining is None else p.remaining
        sys.stderr.write(
            f"\rretrieving: {p.completed} done, {remaining} remaining, {p.failed} failed   "
        )
        sys.stderr.flush()

    return show


def run_retrieve(
    settings: Settings,
    node_name: str,
    study_uid: str,
    series_uid: str | None,
    method: str | None,
    *,
    allow_fallback: bool,
    cancel: threading.Event | None = None,
    on_progress: Callable[[Any], None] | None = None,
) -> Any:
    """Retrieve with our storage SCP running for the duration (C-MOVE needs it)."""
    from dicom_net.nodes import RetrieveMethod
    from dicom_net.retrieve import retrieve
    from dicom_net.storage_server import StorageServer

    node = settings.node(node_name)
    archive = _archive(settings)
    server = StorageServer(
        archive, settings.local, node_for_ae=settings.node_for_ae, limits=settings.receiver_limits
    )
    started = False
    try:
        server.start()
        started = True
    except DicomNetError as exc:
        # Another Loupe (the workstation) may already listen on our port and store into the
        # same archive; the move still lands. Say so rather than fail.
        logging.getLogger("loupe").warning("%s; relying on the receiver already there", exc)
    try:
        return retrieve(
            settings.local,
            node,
            archive,
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            method=RetrieveMethod(method) if method else None,
            allow_fallback=allow_fallback,
            cancel=cancel,
            on_progress=on_progress,
            ingest=server.ingest,
        )
    finally:
        if started:
            server.stop()


def cmd_retrieve(settings: Settings, args: argparse.Namespace) -> int:
    show = _progress_printer(sys.stderr.isatty() and not args.json)
    try:
        result = run_retrieve(
            settings,
            args.node,
            args.study_uid,
            args.series_uid,
            args.method,
            allow_fallback=args.method is None,
            on_progress=show,
        )
    except PartialRetrieve as exc:
        if show:
            sys.stderr.write("\n")
        if args.json and exc.result is not None:
            _print_json(exc.result.as_json())  # type: ignore[attr-defined]
        raise
    if show:
        sys.stderr.write("\n")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        _print_json(result.as_json())
    else:
        mb = result.bytes_received / 1e6
        print(
            f"retrieved study {result.study_instance_uid} from {result.node} by "
            f"{result.method.upper()}: {result.present}/{result.expected} instances, "
            f"{mb:.1f} MB in {result.seconds:.1f} s"
        )
    return EXIT_OK


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_net.importer import import_paths

    archive = _archive(settings)
    report = import_paths(
        archive,
        [Path(p) for p in args.paths],
        on_error=lambda m: print(f"skipped: {m}", file=sys.stderr),
    )
    print(
        f"imported {report.imported} instances ({report.replaced} replaced) in "
        f"{len(report.studies)} studies; {len(report.errors)} files skipped"
    )
    if report.imported == 0 and report.errors:
        raise ArchiveError(f"nothing imported: {report.errors[0]}")
    return EXIT_OK


def cmd_studies(settings: Settings, args: argparse.Namespace) -> int:
    archive = _archive(settings)
    studies = archive.studies()
    if args.json:
        _print_json([s.as_json() for s in studies])
        return EXIT_OK
    _table(
        [
            (
                s.patient_name,
                s.patient_id,
                s.study_date,
                s.study_description[:32],
                "/".join(s.modalities),
                str(s.series_count),
                str(s.instance_count),
                (s.retrieve_state or "local")
                + (f" ({s.missing_instances} missing)" if s.missing_instances else ""),
                s.study_instance_uid,
            )
            for s in studies
        ],
        ("PATIENT", "ID", "DATE", "DESCRIPTION", "MOD", "SERIES", "IMAGES", "STATE", "STUDY UID"),
    )
    return EXIT_OK


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_net.outbox import Outbox, send_now

    node = settings.node(args.node)
    items = send_now(
        Outbox(_archive(settings)), settings.local, node, [Path(f) for f in args.files]
    )
    print(f"sent {len(items)} objects to {node.describe()}")
    return EXIT_OK


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_net.outbox import Outbox, OutboxState

    outbox = Outbox(_archive(settings))
    if args.deliver:
        queued = outbox.items(state=OutboxState.QUEUED)
        delivered, pending = outbox.deliver(settings.local, settings.nodes_by_name(), items=queued)
        print(f"delivered {delivered}, still queued {pending}", file=sys.stderr)
    items = outbox.items()
    if args.json:
        _print_json([i.as_json() for i in items])
    else:
        _table(
            [
                (
                    str(i.id),
                    i.node,
                    i.state.value,
                    str(i.attempts),
                    i.sop_class_uid,
                    (i.last_error or "")[:60],
                )
                for i in items
            ],
            ("ID", "NODE", "STATE", "TRIES", "SOP CLASS", "LAST ERROR"),
        )
    waiting = [i for i in items if i.state in (OutboxState.QUEUED, OutboxState.SENDING)]
    if args.deliver and waiting:
        raise SendFailed(
            f"{len(waiting)} objects still queued or being sent by another Loupe process; "
            "they are retried with backoff"
        )
    return EXIT_OK


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from dicom_net.outbox import Outbox, OutboxWorker
    from dicom_net.storage_server import StorageServer

    archive = _archive(settings)
    server = StorageServer(
        archive,
        settings.local,
        node_for_ae=settings.node_for_ae,
        limits=settings.receiver_limits,
    )
    server.start()
    worker = OutboxWorker(Outbox(archive), settings.local, settings.nodes_by_name)
    worker.start()
    print(
        f"{settings.local.ae_title} listening on port {server.port}; Ctrl-C stops", file=sys.stderr
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        server.stop()
    return EXIT_OK


def cmd_open(settings: Settings, args: argparse.Namespace) -> int:
    """Open a study in the workstation, retrieving it first when it is not (all) here."""
    archive = _archive(settings)
    records = archive.studies(args.study_uid)
    complete = bool(records) and records[0].missing_instances == 0
    if not complete:
        node = args.node or (records[0].source_node if records else None)
        if node is None:
            raise ValueError(
                f"study {args.study_uid} is not in the local archive: give --node NODE to "
                "retrieve it"
            )
        run_retrieve(settings, node, args.study_uid, None, None, allow_fallback=True)
    from app.workstation import run_workstation

    return run_workstation(settings, args)


def cmd_workstation(settings: Settings, args: argparse.Namespace) -> int:
    from app.workstation import run_workstation

    return run_workstation(settings, args)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """The reviewer SR (and the AI SR it succeeds) from the stored review of a study."""
    import tempfile

    from app.reporting import ReportError, build_reports, queue_reports, series_of_study
    from core.review import ReviewStore
    from dicom_net.outbox import Outbox

    archive = _archive(settings)
    store = ReviewStore(settings.storage / "review.sqlite")
    try:
        series_uid = series_of_study(archive, store, args.study_uid)
        out = Path(args.sr)
        with tempfile.TemporaryDirectory(prefix="loupe-report-") as tmp:
            files = build_reports(
                archive,
                store,
                series_uid,
                Path(tmp),
                reader=settings.user,
                lung_rads=args.lung_rads,
                allow_pending=args.allow_pending,
                organization=settings.organization,
            )
            assert files.review_sr is not None
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(files.review_sr.read_bytes())
            written = [out]
            for extra, suffix in ((files.ai_sr, "ai"), (files.kos, "kos")):
                if extra is not None:
                    extra_out = out.with_name(f"{out.stem}-{suffix}{out.suffix or '.dcm'}")
                    extra_out.write_bytes(extra.read_bytes())
                    written.append(extra_out)
            print(
                f"wrote reviewer SR {out} (Lung-RADS {files.lung_rads}"
                f"{', ' + str(files.pending) + ' pending' if files.pending else ''})"
            )
            if args.send:
                node = settings.node(args.send)
                ids = queue_reports(
                    archive, store, files, node.name, reader=settings.user, series_uid=series_uid
                )
                outbox = Outbox(archive)
                outbox.deliver(
                    settings.local, settings.nodes_by_name(), items=outbox.items(ids=ids)
                )
                states = [i.state.value for i in outbox.items(ids=ids)]
                if any(st != "delivered" for st in states):
                    raise SendFailed(
                        f"report not delivered to {node.describe()} yet: "
                        f"{states}; it stays queued and is retried"
                    )
                print(f"sent {len(ids)} objects to {node.describe()}")
    except ReportError as exc:
        raise ValueError(str(exc)) from exc
    return EXIT_OK


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(settings, args)


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="settings file (default: LOUPE_HOME/loupe.toml or the user's config dir)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output (-vv: DICOM network detail)",
    )
    p = argparse.ArgumentParser(
        prog="loupe", parents=[common], description="Loupe AI reading workstation"
    )
    p.add_argument("--version", action="version", version=f"loupe {__version__}")
    view_opts = argparse.ArgumentParser(add_help=False)
    view_opts.add_argument(
        "--screenshot",
        metavar="PNG",
        type=Path,
        help="render the opened study after loading, save, and exit",
    )
    view_opts.add_argument(
        "--layout", choices=("1x1", "slice+heatmap", "mpr"), help="reading layout to start with"
    )
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        type=Path,
        default=argparse.SUPPRESS,
        help="render the workstation, save, and exit",
    )
    p.add_argument("--layout", choices=("1x1", "slice+heatmap", "mpr"), default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str,
        func: Callable[..., int],
        help_: str,
        parents: tuple[argparse.ArgumentParser, ...] = (),
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common, *parents], help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    sp = add("nodes", cmd_nodes, "list the configured PACS nodes")
    sp.add_argument("--json", action="store_true")
    sp = add("echo", cmd_echo, "C-ECHO a node")
    sp.add_argument("node")
    sp = add("find", cmd_find, "C-FIND on a node")
    sp.add_argument("node")
    sp.add_argument("--level", choices=("patient", "study", "series"), required=True)
    sp.add_argument("--patient-id")
    sp.add_argument("--patient-name", help="wildcards * and ? allowed")
    sp.add_argument("--modality")
    sp.add_argument("--study-date", help="YYYYMMDD, YYYYMMDD-YYYYMMDD, today, last7days ...")
    sp.add_argument("--study-uid")
    sp.add_argument("--series-uid")
    sp.add_argument("--json", action="store_true")
    sp = add("retrieve", cmd_retrieve, "retrieve a study or series into the local archive")
    sp.add_argument("node")
    sp.add_argument("--study-uid", required=True)
    sp.add_argument("--series-uid")
    sp.add_argument(
        "--method",
        choices=("move", "get"),
        help="default: the node's setting, falling back from move to get",
    )
    sp.add_argument("--json", action="store_true")
    sp = add("import", cmd_import, "import DICOM files, folders or DICOMDIRs")
    sp.add_argument("paths", nargs="+")
    sp = add("studies", cmd_studies, "list the studies in the local archive")
    sp.add_argument("--json", action="store_true")
    sp = add("send", cmd_send, "C-STORE files to a node (queued in the outbox until delivered)")
    sp.add_argument("node")
    sp.add_argument("files", nargs="+")
    sp = add("outbox", cmd_outbox, "show the outbox; --deliver retries queued objects now")
    sp.add_argument("--deliver", action="store_true")
    sp.add_argument("--json", action="store_true")
    add("serve", cmd_serve, "run the storage SCP and the outbox without a window")
    register_inference_commands(add)
    sp = add(
        "open",
        cmd_open,
        "open a study in the workstation (retrieved first if needed)",
        (view_opts,),
    )
    sp.add_argument("--study-uid", required=True)
    sp.add_argument("--node", help="node to retrieve from when the study is not here")
    from app.cli_review import register as register_review

    register_review(add)
    sp = add("report", cmd_report, "write (and send) the reviewer SR from a study's review")
    sp.add_argument("--study-uid", required=True)
    sp.add_argument("--sr", metavar="OUT.dcm", required=True)
    sp.add_argument("--send", metavar="NODE", help="queue and send the SRs to this node")
    sp.add_argument("--lung-rads", help="override the suggested Lung-RADS category")
    sp.add_argument(
        "--allow-pending",
        action="store_true",
        help="report even if some findings were not reviewed",
    )
    sp = add(
        "demo",
        cmd_demo,
        "generate demo studies, serve them on loopback, retrieve them, "
        "and open the workstation on the CT",
        (view_opts,),
    )
    sp.add_argument("--regenerate", action="store_true", help="make the demo studies anew")
    sp.add_argument(
        "--no-window",
        action="store_true",
        help="end after the retrieve with a summary (headless machines, scripts)",
    )
    return p


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(
        logging.DEBUG if verbosity >= 2 else logging.CRITICAL if verbosity == 0 else logging.WARNING
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0) or 0)
    func: Callable[..., int] = getattr(args, "func", None) or cmd_workstation
    try:
        settings = load_settings(getattr(args, "config", None))
        return int(func(settings, args))
    except KeyboardInterrupt:
        print("loupe: interrupted", file=sys.stderr)
        return 130
    except tuple(t for t, _ in _EXIT_FOR) as exc:
        code = next(c for t, c in _EXIT_FOR if isinstance(exc, t))
        print(f"loupe: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
