"""`loupe demo`: a PACS-free tour. Generates demo studies, serves them from an embedded
Q/R SCP on loopback (Loupe's own archive answering C-FIND/C-MOVE), and retrieves them into
the workstation's archive over real DICOM associations."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from app.settings import Settings
from dicom_net.archive import LocalArchive
from dicom_net.errors import DicomNetError
from dicom_net.importer import import_paths
from dicom_net.nodes import LocalNode, RemoteNode, RetrieveMethod
from dicom_net.query import FindQuery, find
from dicom_net.retrieve import RetrieveProgress, retrieve
from dicom_net.storage_server import StorageServer

DEMO_AE = "LOUPEDEMO"
DEMO_CT_SEED = 2026
DEMO_ES_SEED = 7


def demo_pacs_root(settings: Settings) -> Path:
    return settings.storage.parent / "demo-pacs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_demo_pacs(root: Path, *, regenerate: bool = False) -> LocalArchive:
    """The demo PACS's archive with a chest CT (nodules) and an endoscopy study."""
    if regenerate and root.exists():
        shutil.rmtree(root)
    archive = LocalArchive(root)
    if len(archive.studies()) >= 2:
        return archive
    from core.synthetic.chest_ct import make_chest_ct, write_ct_series
    from core.synthetic.endoscopy import write_endoscopy_study

    print("demo: generating a synthetic chest CT and an endoscopy study ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="loupe-demo-") as tmp:
        ct_dir, es_dir = Path(tmp) / "ct", Path(tmp) / "es"
        phantom = make_chest_ct(seed=DEMO_CT_SEED, slices=160, nodule_count=5)
        write_ct_series(
            phantom,
            ct_dir,
            patient_id="DEMO-001",
            patient_name="Demo^Chest",
            study_date="20261120",
            accession_number="DEMOCT1",
            study_description="CT CHEST LOW DOSE (synthetic demo)",
            uid_seed="loupe-demo-ct",
        )
        write_endoscopy_study(
            es_dir,
            seed=DEMO_ES_SEED,
            frames=24,
            patient_id="DEMO-002",
            patient_name="Demo^Endoscopy",
            study_date="20261121",
            uid_seed="loupe-demo-es",
        )
        report = import_paths(archive, [ct_dir, es_dir])
    if report.errors:
        raise DicomNetError(f"demo studies could not be stored: {report.errors[0]}")
    return archive


def with_demo_pacs(settings: Settings, node: RemoteNode) -> Settings:
    """The settings the demo's window runs with: the embedded PACS as a node and, unless the
    user chose one, as the report destination."""
    report = dict(settings.extra.get("report", {}))
    report.setdefault("destination", node.name)
    return replace(
        settings,
        nodes=(*[n for n in settings.nodes if n.name != node.name], node),
        extra={**settings.extra, "report": report},
    )


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    if not args.no_window:
        from app.workstation import no_display_reason

        problem = no_display_reason()
        if problem is not None:
            print(f"loupe: {problem}", file=sys.stderr)
            return 2
    pacs_archive = build_demo_pacs(demo_pacs_root(settings), regenerate=args.regenerate)
    workstation = LocalArchive(settings.storage)

    # The workstation's receiver: the configured port, or any free one if it is taken
    # (the embedded PACS is told where we listen, so any port works here).
    local = replace(
        settings.local,
        allowed_callers=tuple(dict.fromkeys([*settings.local.allowed_callers, DEMO_AE])),
    )
    receiver = StorageServer(
        workstation,
        local,
        node_for_ae=lambda ae: "demo" if ae == DEMO_AE else settings.node_for_ae(ae),
        limits=settings.receiver_limits,
    )
    try:
        receiver.start()
    except DicomNetError:
        local = replace(local, port=_free_port(), bind="127.0.0.1")
        receiver = StorageServer(
            workstation, local, node_for_ae=lambda _ae: "demo", limits=settings.receiver_limits
        )
        receiver.start()

    demo_local = LocalNode(DEMO_AE, _free_port(), "127.0.0.1", (local.ae_title,))
    demo_pacs = StorageServer(
        pacs_archive, demo_local, qr_destinations={local.ae_title: ("127.0.0.1", receiver.port)}
    )
    demo_pacs.start()
    node = RemoteNode("demo", DEMO_AE, "127.0.0.1", demo_pacs.port, RetrieveMethod.MOVE)
    try:
        print(
            f"demo: embedded PACS {DEMO_AE} on 127.0.0.1:{demo_pacs.port}; workstation "
            f"{local.ae_title} receiving on port {receiver.port}",
            file=sys.stderr,
        )
        studies = find(local, node, FindQuery(level="study"))
        ct_uid = next(
            (
                st["StudyInstanceUID"]
                for st in studies
                if "CT" in str(st.get("ModalitiesInStudy", ""))
            ),
            None,
        )
        for st in studies:
            uid = st["StudyInstanceUID"]

            def show(p: RetrieveProgress) -> None:
                if sys.stderr.isatty():
                    sys.stderr.write(f"\r  {p.completed} received, {p.remaining} remaining ")

            result = retrieve(
                local,
                node,
                workstation,
                study_instance_uid=uid,
                method=RetrieveMethod.MOVE,
                on_progress=show,
                ingest=receiver.ingest,
            )
            if sys.stderr.isatty():
                sys.stderr.write("\n")
            print(
                f"retrieved {st['ModalitiesInStudy'] or '?':>3} study "
                f"{st['StudyDescription'] or '(no description)'!r} of {st['PatientName']}: "
                f"{result.present}/{result.expected} instances by C-MOVE in "
                f"{result.seconds:.1f} s"
            )
    except BaseException:
        with contextlib.suppress(Exception):
            demo_pacs.stop()
        raise
    finally:
        receiver.stop()
    print(
        f"demo: {len(studies)} studies are in the local archive {settings.storage} "
        "(loupe studies lists them)"
    )
    try:
        if args.no_window:
            return 0
        from app.workstation import run_workstation

        # The embedded PACS stays up while the window is open: it is the PACS tab's node and
        # the report destination, so the demo can sign and send like a real site.
        args.study_uid = ct_uid
        return run_workstation(with_demo_pacs(settings, node), args)
    finally:
        with contextlib.suppress(Exception):
            demo_pacs.stop()
