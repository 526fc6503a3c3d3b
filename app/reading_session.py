"""The reading logic, without a window: open a study (typed load events), analyse it (or take
the stored analysis), review it, read prior results, sign. The workstation only wires its
widgets and threads to this (the Logic/Widget split of 3D Slicer; napari's model vs its Qt
viewer); the CLI and tests drive the same code.

Qt-free: nothing here imports PySide6 or VTK (tests/test_code_quality.py checks the import
contracts of the packages; this module is checked by its test importing it with Qt absent
from sys.modules).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.reporting import ReportFiles, build_reports, installation_uid, queue_reports
from app.settings import Settings
from core.findings import FindingSet
from core.review import ReviewSession, ReviewStore
from core.volume import Volume
from dicom_net.archive import InstanceRecord, LocalArchive

CT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
}
FRAME_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture (frames exported as SC)
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
}
SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
}
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
PARAMETRIC_MAP_CLASS = "1.2.840.10008.5.1.4.1.1.30"


@dataclass(frozen=True)
class StudyContent:
    """What of a study Loupe reads: its main CT series, else its endoscopy frames."""

    ct_paths: list[Path]
    frame_instances: list[InstanceRecord]


# Typed load events, in the order they come.
@dataclass(frozen=True)
class FirstImage:
    """The middle slice is decoded: the volume (other slices still empty) can be shown."""

    volume: Volume


@dataclass(frozen=True)
class SlicesLoaded:
    done: int
    total: int


@dataclass(frozen=True)
class Loaded:
    volume: Volume


LoadEvent = FirstImage | SlicesLoaded | Loaded


@dataclass(frozen=True)
class PriorResult:
    center_mm: tuple[float, float, float]
    diameter_mm: float
    label: str


@dataclass(frozen=True)
class Priors:
    """Results already in a study by other producers (SR, SEG, parametric map)."""

    marks: list[PriorResult]
    producers: list[str]  # one line each, unreadable objects named
    heat: npt.NDArray[np.uint8] | None  # a parametric map on the volume's grid


def pick_ct_series(instances: list[InstanceRecord]) -> list[InstanceRecord]:
    """The study's main CT series: the one with the most CT images."""
    by_series: dict[str, list[InstanceRecord]] = {}
    for inst in instances:
        if inst.sop_class_uid in CT_CLASSES:
            by_series.setdefault(inst.series_instance_uid, []).append(inst)
    if not by_series:
        return []
    return max(by_series.values(), key=len)


class ReadingSession:
    def __init__(self, settings: Settings, archive: LocalArchive):
        self.settings = settings
        self.archive = archive
        self.review_store = ReviewStore(settings.storage / "review.sqlite")
        self._engine: Any = None

    # -- open ---------------------------------------------------------------------------------
    def content(self, study_uid: str) -> StudyContent:
        instances = self.archive.instances(study_instance_uid=study_uid)
        series = pick_ct_series(instances)
        if series:
            return StudyContent([i.path for i in series], [])
        frames = [i for i in instances if i.sop_class_uid in FRAME_CLASSES]
        return StudyContent([], sorted(frames, key=lambda i: i.instance_number or 0))

    @staticmethod
    def load(paths: list[Path], cancel: Callable[[], bool] | None = None) -> Iterator[LoadEvent]:
        """Load a CT series: FirstImage (the middle slice decoded first), SlicesLoaded every
        24 slices, then Loaded with the finished volume."""
        from core.loading import SeriesLoader

        loader = SeriesLoader(paths, cancel=cancel)
        plan = loader.plan
        provisional = Volume(
            voxels=loader.voxels,
            affine=plan.affine,
            frame_of_reference_uid=plan.frame_of_reference_uid,
            study_instance_uid=plan.study_instance_uid,
            series_instance_uid=plan.series_instance_uid,
            modality=plan.modality,
            sop_instance_uids=plan.sop_instance_uids,
            frame_numbers=plan.frame_numbers,
        )
        total = plan.shape[0]
        for n, _k in enumerate(loader.iter_slices(first=total // 2)):
            if n == 0:
                yield FirstImage(provisional)
            elif n % 24 == 0:
                yield SlicesLoaded(n, total)
        yield Loaded(loader.volume())

    # -- analyse ------------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        if self._engine is None:
            from inference.engine import InferenceEngine
            from inference.result_store import ResultStore

            # Analyses are kept beside the archive: a series this model version analysed
            # before (here, by `loupe analyze`, or on arrival) opens with its findings at once.
            self._engine = InferenceEngine(results=ResultStore(self.settings.storage / "analyses"))
        return self._engine

    def stored_analysis(self, volume: Volume) -> Any | None:
        """The analysis this model version made of this series before, or None."""
        from inference.errors import InputNotApplicable, ModelError
        from inference.result_store import volume_input_key

        try:
            model = self.engine.model_for(volume.modality, None)
            return self.engine.cached(
                volume.series_instance_uid, model, volume_input_key(volume.shape, volume.affine)
            )
        except (ModelError, InputNotApplicable, OSError):
            return None

    @staticmethod
    def heat_on_grid(analysis: Any, volume: Volume) -> npt.NDArray[np.uint8] | None:
        pv = analysis.probability_volume
        if pv is None:
            return None
        from core.heatmap import resample_to_grid

        heat: npt.NDArray[np.uint8] = resample_to_grid(
            pv.probabilities, pv.affine, volume.shape, volume.affine
        )
        return heat

    def analyse_volume(
        self,
        volume: Volume,
        progress: Callable[[float, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        return self.engine.analyze_volume(volume, progress=progress, cancel=cancel)

    def analyse_frames(
        self,
        frames: list[tuple[Any, str, int]],
        series_uid: str,
        progress: Callable[[float, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        """frames: (rgb, SOP Instance UID, frame number)."""
        from inference.endoscopy_classifier import FrameRef

        refs = [(rgb, FrameRef(series_uid, sop, fr)) for rgb, sop, fr in frames]
        return self.engine.analyze_frames(refs, progress=progress, cancel=cancel)

    # -- review -------------------------------------------------------------------------------
    def review(self, analysis: Any, findings: FindingSet, series_uid: str) -> ReviewSession:
        """The review of an analysis: its findings at its operating point, earlier decisions
        applied (a new model version starts a new review: core.review)."""
        session = ReviewSession(self.review_store, findings, series_uid, self.settings.user)
        session.start(list(analysis.findings), show_from=analysis.point.threshold)
        return session

    # -- priors -------------------------------------------------------------------------------
    def prior_instances(self, study_uid: str) -> list[InstanceRecord]:
        kinds = SR_CLASSES | {SEG_CLASS, PARAMETRIC_MAP_CLASS}
        return [
            i
            for i in self.archive.instances(study_instance_uid=study_uid)
            if i.sop_class_uid in kinds
        ]

    def priors(self, study_uid: str, volume: Volume) -> Priors:
        """Other producers' results in the study, read-only; reviewer SRs (they restate the
        AI SR) and this installation's own results (the live ones) are left out."""
        import pydicom

        from core.reports.read import read_findings
        from core.reports.read_pmap import map_on_volume_grid, producer_of
        from core.reports.read_seg import summarize_segments

        own_device = installation_uid(self.settings.storage)
        marks: list[PriorResult] = []
        producers: list[str] = []
        problems: list[str] = []
        heat = None
        for inst in self.prior_instances(study_uid):
            if inst.sop_class_uid == PARAMETRIC_MAP_CLASS:
                try:
                    ds = pydicom.dcmread(inst.path)
                    heat = map_on_volume_grid(ds, volume)
                except Exception as exc:  # another grid, another frame of reference
                    problems.append(f"{inst.path.name}: {exc}")
                    continue
                producers.append(f"parametric map by {producer_of(ds)}")
                continue
            if inst.sop_class_uid == SEG_CLASS:
                try:
                    segments = summarize_segments(pydicom.dcmread(inst.path))
                except Exception as exc:  # another producer's SEG we cannot read
                    problems.append(f"{inst.path.name}: {exc}")
                    continue
                for seg in segments:
                    if seg.frame_of_reference_uid in ("", volume.frame_of_reference_uid):
                        marks.append(
                            PriorResult(seg.center_mm, seg.diameter_mm, f"prior SEG: {seg.label}")
                        )
                if segments:
                    producers.append(f"SEG by {segments[0].producer}")
                continue
            try:
                producer, found = read_findings(pydicom.dcmread(inst.path))
            except Exception as exc:  # someone else's SR we cannot read: say so
                problems.append(f"{inst.path.name}: {exc}")
                continue
            if producer.verified:
                continue  # reviewer SRs restate the AI SR: show the AI's marks once
            if producer.device_uid == own_device:
                continue  # this installation's own results are the live ones
            producers.append(producer.describe())
            name = (
                producer.algorithms[0][0]
                if producer.algorithms
                else (producer.device_name or producer.manufacturer or "prior")
            )
            for f in found:
                if f.center_mm is None or f.frame_of_reference_uid not in (
                    None,
                    "",
                    volume.frame_of_reference_uid,
                ):
                    continue
                marks.append(PriorResult(f.center_mm, f.diameter_mm or 6.0, f"prior: {name}"))
        return Priors(marks, producers + [f"unreadable: {p}" for p in problems], heat)

    # -- sign ---------------------------------------------------------------------------------
    def report_destination(self) -> str | None:
        dest = self.settings.extra.get("report", {}).get("destination")
        if dest:
            return str(dest)
        return self.settings.nodes[0].name if self.settings.nodes else None

    def sign(
        self,
        series_uid: str,
        *,
        lung_rads: str | None,
        operating_point: tuple[str, float] | None,
        destination: str | None,
        allow_pending: bool = True,
    ) -> tuple[ReportFiles, list[int]]:
        """Build the reports from the stored review (verified by the settings' user, of the
        settings' organisation), keep them in the study, and queue them for `destination`
        (none: built and kept only)."""
        out_dir = self.settings.storage / "reports" / series_uid
        files = build_reports(
            self.archive,
            self.review_store,
            series_uid,
            out_dir,
            reader=self.settings.user,
            lung_rads=lung_rads,
            allow_pending=allow_pending,
            organization=self.settings.organization,
            operating_point=operating_point,
        )
        ids: list[int] = []
        if destination is not None:
            ids = queue_reports(
                self.archive,
                self.review_store,
                files,
                destination,
                reader=self.settings.user,
                series_uid=series_uid,
            )
        return files, ids
