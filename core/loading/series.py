"""Load a CT series (paths of its files) into a `Volume`, the first slices available early.

Headers are read first (fast: pixels stay on disk) to plan the stack and its geometry; then
pixels are decoded in a thread pool straight into the one output array, so peak memory is
about the volume plus a few slices.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.loading.errors import FileProblem, LoadCancelled, LoadError
from core.loading.headers import FileHeader, FrameHeader, read_file_header
from core.loading.pixels import decode_into
from core.loading.stack import SeriesPlan, plan_stack
from core.volume import Volume

__all__ = ["LoadProgress", "SeriesLoader", "load_series"]

Cancel = Callable[[], bool]  # e.g. threading.Event().is_set


@dataclass(frozen=True, eq=False)
class LoadProgress:
    """Where a load stands. `voxels` is the volume being filled: slice `index` is ready."""

    done: int  # slices filled so far
    total: int
    index: int | None  # k of the slice just filled; None before the first one
    voxels: npt.NDArray[np.int16] | npt.NDArray[np.float32]  # live; unfilled slices undefined
    filled: npt.NDArray[np.bool_]  # live: filled[k] once voxels[k] holds its HU
    affine: npt.NDArray[np.float64]
    warnings: tuple[str, ...]


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _series_name(paths: Sequence[Path]) -> str:
    if not paths:
        return "(no files)"
    parents = {str(p.parent) for p in paths}
    where = parents.pop() if len(parents) == 1 else f"{paths[0].parent} and others"
    return f"{where} ({len(paths)} file{'' if len(paths) == 1 else 's'})"


class SeriesLoader:
    """Plans a series from its headers on construction; decodes pixels when asked.

    `plan` (geometry, shape, warnings) is known before any pixel is read; `iter_slices`
    fills `voxels` and yields each slice as it lands; `volume()` finishes and returns it.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        *,
        cancel: Cancel | None = None,
        workers: int | None = None,
    ) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self._cancel = cancel
        self._workers = workers or _default_workers()
        self._file_problems: list[str] = []  # files unusable at header time
        self._decode_problems: list[str] = []  # files whose pixels failed, clipping notes
        self._headers: dict[str, FileHeader] = {}
        for path in self.paths:
            self._check_cancel()
            try:
                header = read_file_header(path)
            except FileProblem as exc:
                self._file_problems.append(str(exc))
                continue
            self._headers[str(path)] = header
        if not self._headers:
            raise LoadError(self._nothing_usable())
        try:
            self.plan: SeriesPlan = plan_stack(list(self._headers.values()))
        except LoadError as exc:
            raise LoadError(f"series {_series_name(self.paths)}: {exc}") from exc
        self.voxels = np.empty(self.plan.shape, dtype=self.plan.dtype)
        self._filled = np.zeros(self.plan.shape[0], dtype=bool)
        for k, frame in enumerate(self.plan.slices):
            if frame is None:
                self.voxels[k] = self.plan.fill_value
                self._filled[k] = True
        self._decoded_any = False

    def _nothing_usable(self) -> str:
        problems = self._file_problems + self._decode_problems
        detail = "; ".join(problems[:5])
        more = len(problems) - 5
        if more > 0:
            detail += f"; and {more} more"
        return f"series {_series_name(self.paths)}: no usable image ({detail})"

    def _check_cancel(self) -> None:
        if self._cancel is not None and self._cancel():
            raise LoadCancelled(f"loading {_series_name(self.paths)} was cancelled")

    @property
    def filled(self) -> npt.NDArray[np.bool_]:
        """filled[k] is True once voxels[k] holds its final values (live, do not modify)."""
        return self._filled

    @property
    def warnings(self) -> tuple[str, ...]:
        """Files that could not be used, what the stack checks found, then decode problems."""
        return (*self._file_problems, *self.plan.warnings, *self._decode_problems)

    def _tasks(self, first: int | None) -> list[tuple[FileHeader, list[tuple[FrameHeader, int]]]]:
        by_file: dict[str, list[tuple[FrameHeader, int]]] = {}
        for k, frame in enumerate(self.plan.slices):
            if frame is not None and not self._filled[k]:
                by_file.setdefault(str(frame.path), []).append((frame, k))
        tasks = [(self._headers[p], t) for p, t in by_file.items()]
        tasks.sort(key=lambda t: t[1][0][1])  # in slice order: slice 0 arrives first
        if first is not None:
            tasks.sort(key=lambda t: not any(k == first for _, k in t[1]))
        return tasks

    def iter_slices(self, *, first: int | None = None) -> Iterator[int]:
        """Decode the pixels; yield each k as `voxels[k]` is filled (slice `first` first).

        Runs the decoders in a thread pool; the iteration happens on the caller's thread.
        A file whose pixels fail leaves its slices at the fill value and adds a warning.
        """
        tasks = self._tasks(first)
        if not tasks:
            return
        pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="loupe-decode")
        try:
            pending: list[tuple[Future[list[str]], list[tuple[FrameHeader, int]]]] = []
            window = self._workers * 2  # bounded look-ahead keeps slices arriving in order
            queue = list(tasks)
            queue.reverse()

            def submit() -> None:
                while queue and len(pending) < window:
                    header, targets = queue.pop()
                    pending.append(
                        (pool.submit(decode_into, header, targets, self.voxels), targets)
                    )

            submit()
            while pending:
                future, targets = pending.pop(0)
                try:
                    notes = future.result()
                except FileProblem as exc:
                    self._decode_problems.append(f"{exc}; its slices are left blank")
                    for _, k in targets:
                        self.voxels[k] = self.plan.fill_value
                    notes = []
                else:
                    self._decoded_any = True
                self._decode_problems.extend(notes)
                submit()
                for _, k in targets:
                    self._filled[k] = True
                    self._check_cancel()
                    yield k
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def volume(self) -> Volume:
        """Decode whatever is left and return the volume with every warning."""
        for _ in self.iter_slices():
            pass
        if not self._decoded_any:
            raise LoadError(self._nothing_usable())
        return Volume(
            voxels=self.voxels,
            affine=self.plan.affine,
            frame_of_reference_uid=self.plan.frame_of_reference_uid,
            study_instance_uid=self.plan.study_instance_uid,
            series_instance_uid=self.plan.series_instance_uid,
            modality=self.plan.modality,
            sop_instance_uids=self.plan.sop_instance_uids,
            frame_numbers=self.plan.frame_numbers,
            warnings=self.warnings,
        )


def load_series(
    paths: Sequence[Path | str],
    *,
    on_progress: Callable[[LoadProgress], None] | None = None,
    cancel: Cancel | None = None,
    workers: int | None = None,
) -> Volume:
    """Load one CT series (its files, any order) as a HU volume.

    `on_progress` is called on the calling thread: once when the geometry is known (index
    None), then after each slice lands, with the volume being filled, so a viewer can show the
    first slice while the rest loads. `cancel()` returning True stops with LoadCancelled.
    Raises LoadError naming the series when nothing usable remains; unusable files and every
    irregularity found are listed in `Volume.warnings`.
    """
    loader = SeriesLoader(paths, cancel=cancel, workers=workers)
    total = loader.plan.shape[0]

    def report(done: int, index: int | None) -> None:
        if on_progress is not None:
            on_progress(
                LoadProgress(
                    done=done,
                    total=total,
                    index=index,
                    voxels=loader.voxels,
                    filled=loader.filled,
                    affine=loader.plan.affine,
                    warnings=loader.warnings,
                )
            )

    report(0, None)
    done = sum(s is None for s in loader.plan.slices)  # blank slices are ready from the start
    for k in loader.iter_slices():
        done += 1
        report(done, k)
    return loader.volume()
