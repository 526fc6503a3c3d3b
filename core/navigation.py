"""Where the reader is looking: one world position shared by every pane (crosshair sync),
and the finding currently selected."""

from __future__ import annotations

from core.events import Signal


class Cursor:
    """A point in patient coordinates (LPS, mm); panes scroll to it and draw the crosshair."""

    def __init__(self) -> None:
        self._world: tuple[float, float, float] | None = None
        self._selected: str | None = None
        self.moved: Signal[tuple[float, float, float]] = Signal()
        self.selection_changed: Signal[str | None] = Signal()

    @property
    def world(self) -> tuple[float, float, float] | None:
        return self._world

    @property
    def selected_finding(self) -> str | None:
        return self._selected

    def move_to(self, world: tuple[float, float, float]) -> None:
        world = (float(world[0]), float(world[1]), float(world[2]))
        if world != self._world:
            self._world = world
            self.moved.emit(world)

    def select(self, finding_id: str | None) -> None:
        if finding_id != self._selected:
            self._selected = finding_id
            self.selection_changed.emit(finding_id)
