"""Run work off the GUI thread; results hop back to the GUI thread through Qt signals."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(str)
    progress = Signal(object)


class Task(QRunnable):
    """`fn(progress)` runs on a pool thread; `progress(value)` may be called from it."""

    def __init__(self, fn: Callable[[Callable[[Any], None]], Any]):
        super().__init__()
        self.fn = fn
        self.signals = _Signals()
        self.setAutoDelete(False)  # the caller keeps it while its signals are connected

    def run(self) -> None:
        try:
            result = self.fn(self._progress)
        except Exception as exc:  # reported to the GUI, never swallowed
            log.debug("task failed: %s", traceback.format_exc())
            self._emit(self.signals.failed, str(exc) or type(exc).__name__)
        else:
            self._emit(self.signals.done, result)

    def _progress(self, value: Any) -> None:
        self._emit(self.signals.progress, value)

    @staticmethod
    def _emit(signal: Any, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the window (and its receivers) closed while we worked
            log.debug("task result dropped: receiver gone")


_running: set[Task] = set()


def run_task(
    fn: Callable[[Callable[[Any], None]], Any],
    *,
    on_done: Callable[[Any], None] | None = None,
    on_failed: Callable[[str], None] | None = None,
    on_progress: Callable[[Any], None] | None = None,
) -> Task:
    task = Task(fn)
    _running.add(task)
    if on_done is not None:
        task.signals.done.connect(on_done)
    if on_failed is not None:
        task.signals.failed.connect(on_failed)
    if on_progress is not None:
        task.signals.progress.connect(on_progress)
    task.signals.done.connect(lambda _r: _running.discard(task))
    task.signals.failed.connect(lambda _e: _running.discard(task))
    QThreadPool.globalInstance().start(task)
    return task
