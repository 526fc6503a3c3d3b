"""The AI engine: picks the model for a series, runs it off the caller's thread with progress
and cancel, and caches results per (series, model id, model version): in memory, and on disk
when given a ResultStore (a series a model version already analysed is not analysed again)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from core.findings import Finding
from core.heatmap import FrameHeatmap, ProbabilityVolume
from core.volume import Volume
from inference.endoscopy_classifier import EndoscopyClassifier, EndoscopyResult, FrameRef
from inference.errors import InputNotApplicable
from inference.manifest import Manifest, OperatingPoint, Task
from inference.nodule_detector import NoduleDetector, NoduleResult
from inference.registry import ModelRegistry
from inference.result_store import ResultStore, frames_input_key, volume_input_key
from inference.runtime import SessionInfo
from inference.series_input import SeriesFiles, load_ct, load_frames

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
CacheKey = tuple[str, str, str]  # (series instance UID, model id, model version)


@dataclass(frozen=True, eq=False)
class Analysis:
    """What the workstation shows: findings at an operating point, heatmaps and the device
    the model ran on.

    `candidates` holds everything the decoder kept (down to the manifest's candidate
    threshold, for FROC and for readers who ask for every candidate); `findings` those at or
    above `operating_point` (by default the manifest's validated default point).
    """

    series_instance_uid: str
    model: Manifest
    session: SessionInfo
    candidates: list[Finding]
    probability_volume: ProbabilityVolume | None = None  # CT
    frame_heatmaps: tuple[FrameHeatmap, ...] = ()  # endoscopy, informative frames
    nodule: NoduleResult | None = None
    endoscopy: EndoscopyResult | None = None
    warnings: tuple[str, ...] = ()
    operating_point: OperatingPoint | None = None  # None: the model's default
    capped: bool = False  # the model's max_findings was reached

    @property
    def point(self) -> OperatingPoint:
        return self.operating_point or self.model.default_operating_point

    @property
    def findings(self) -> list[Finding]:
        thr = self.point.threshold
        return [f for f in self.candidates if f.probability >= thr]

    def at(self, point: OperatingPoint | None) -> Analysis:
        """The same analysis shown at another operating point (None: every candidate)."""
        if point is None:
            point = OperatingPoint(
                name="all candidates",
                threshold=0.0,
                sensitivity=float("nan"),
                data="every candidate the model kept",
            )
        return replace(self, operating_point=point)

    @property
    def cap_hides_findings(self) -> bool:
        """The model's max_findings cut candidates that would be shown at this point (every
        candidate kept is at or above the threshold, and there were more)."""
        thr = self.point.threshold
        return self.capped and all(c.probability >= thr for c in self.candidates)

    def summary(self) -> str:
        """E.g. "AI: 4 findings at 'balanced' (p >= 0.52; 0.90 sensitivity at 1 FP/scan on
        validation)", with the cap stated when it was hit."""
        n = len(self.findings)
        p = self.point
        unit = "finding" if n == 1 else "findings"
        if p.name == "all candidates":
            text = f"AI: {n} {unit}: every candidate (p >= {self.model.candidate_threshold:.2f})"
        elif p.name == "manifest threshold":
            text = f"AI: {n} {unit} at p >= {p.threshold:.2f} (no validated operating point)"
        else:
            text = f"AI: {n} {unit} at {p.describe()}"
        hidden = len(self.candidates) - n
        if hidden > 0:
            text += f"; {hidden} lower candidate(s) hidden"
        if self.cap_hides_findings:
            text += (
                f"; the model's limit of {len(self.candidates)} candidates was reached: "
                "more may lie at this point"
            )
        return text


class InferenceEngine:
    def __init__(
        self,
        registry: ModelRegistry | None = None,
        providers: Sequence[str] | None = None,
        results: ResultStore | None = None,
    ) -> None:
        """`results`: keep every analysis on disk and reuse it (same series, model version
        and input) instead of running the model again."""
        self.registry = registry or ModelRegistry()
        self.providers = tuple(providers) if providers else None
        self.results = results
        self._cache: dict[CacheKey, Analysis] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loupe-inference")

    def model_for(self, modality: str, model_id: str | None) -> Manifest:
        m = self.registry.get(model_id) if model_id else self.registry.for_modality(modality)
        if modality.upper() not in m.applies_to.modalities:
            raise InputNotApplicable(
                f"model {m.id} applies to {'/'.join(m.applies_to.modalities)} series; "
                f"this series is {modality or 'of unknown modality'}"
            )
        return m

    def cached(
        self, series_uid: str, model: Manifest, input_key: str | None = None
    ) -> Analysis | None:
        """The analysis of this series by this model version made before: in memory, else
        (given the input's key) on disk."""
        with self._lock:
            hit = self._cache.get((series_uid, model.id, model.version))
        if hit is not None or self.results is None or input_key is None:
            return hit
        stored: Analysis | None = self.results.load(series_uid, model, input_key)
        if stored is not None:
            with self._lock:
                self._cache[(series_uid, model.id, model.version)] = stored
        return stored

    def analyze_volume(
        self,
        volume: Volume,
        *,
        model_id: str | None = None,
        body_part: str | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Analysis:
        m = self.model_for(volume.modality, model_id)
        key = volume_input_key(volume.shape, volume.affine)
        hit = (
            self.cached(volume.series_instance_uid, m, key) if volume.series_instance_uid else None
        )
        if hit is not None:
            return hit
        if m.task is not Task.DETECTION_3D_HEATMAP:
            raise InputNotApplicable(f"model {m.id} does not take CT volumes")
        det = NoduleDetector(m, self.providers)
        res = det.detect(
            volume,
            body_part=body_part,
            progress=progress,
            cancel=cancel.is_set if cancel is not None else None,
        )
        a = Analysis(
            volume.series_instance_uid,
            m,
            res.session,
            res.findings,
            probability_volume=res.probability_volume,
            nodule=res,
            warnings=(*volume.warnings, *res.warnings),
            capped=res.capped,
        )
        self._store(a, key)
        return a

    def analyze_frames(
        self,
        frames: Sequence[tuple[object, FrameRef]],
        *,
        model_id: str | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Analysis:
        if not frames:
            raise InputNotApplicable("no frames to analyse")
        ref = frames[0][1]
        m = self.model_for(ref.modality, model_id)
        key = frames_input_key([r for _, r in frames])
        hit = self.cached(ref.series_instance_uid, m, key)
        if hit is not None:
            return hit
        if m.task is not Task.FRAME_CLASSIFICATION_CAM:
            raise InputNotApplicable(f"model {m.id} does not take frames")
        clf = EndoscopyClassifier(m, self.providers)
        res = clf.assess(
            frames,  # type: ignore[arg-type]
            progress=progress,
            cancel=cancel.is_set if cancel is not None else None,
        )
        a = Analysis(
            ref.series_instance_uid,
            m,
            res.session,
            res.findings,
            frame_heatmaps=tuple(f.heatmap for f in res.ranked if f.heatmap is not None),
            endoscopy=res,
        )
        self._store(a, key)
        return a

    def analyze_series(
        self,
        series: SeriesFiles,
        *,
        model_id: str | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Analysis:
        """Load and analyse one series of DICOM files (CT volume or endoscopy frames)."""
        m = self.model_for(series.modality, model_id)
        with self._lock:
            hit = self._cache.get((series.series_instance_uid, m.id, m.version))
        if hit is not None:
            return hit
        if m.task is Task.DETECTION_3D_HEATMAP:
            vol = load_ct(series)
            return self.analyze_volume(
                vol, model_id=m.id, body_part=series.body_part, progress=progress, cancel=cancel
            )
        return self.analyze_frames(
            load_frames(series), model_id=m.id, progress=progress, cancel=cancel
        )

    def submit(
        self,
        series: SeriesFiles,
        *,
        model_id: str | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Future[Analysis]:
        """Analyse on the engine's worker thread; progress is called there (a GUI hops it
        back to its own thread)."""
        return self._pool.submit(
            self.analyze_series, series, model_id=model_id, progress=progress, cancel=cancel
        )

    def _store(self, a: Analysis, input_key: str) -> None:
        if a.series_instance_uid:
            with self._lock:
                self._cache[(a.series_instance_uid, a.model.id, a.model.version)] = a
            if self.results is not None:
                try:
                    self.results.save(a, input_key)
                except OSError as exc:  # a full disk must not lose the analysis just made
                    log.warning("analysis not kept on disk (%s); it stays in memory", exc)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
