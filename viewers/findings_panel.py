"""FindingsPanel: the list of findings (id, slice, diameter, probability, model, status);
selecting one moves every pane there."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QWidget

from core.display import STATUS_COLORS
from core.findings import Finding, FindingSet
from core.navigation import Cursor

COLUMNS = ("#", "Slice", "Ø mm", "P", "Type", "Model", "Status")


class FindingsPanel(QTableWidget):
    def __init__(self, cursor: Cursor, parent: QWidget | None = None):
        super().__init__(0, len(COLUMNS), parent)
        self.nav = cursor
        self.findings: FindingSet | None = None
        self._ids: list[str] = []
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)
        self.setSortingEnabled(False)
        self.itemSelectionChanged.connect(self._on_select)
        cursor.selection_changed.connect(self._follow_selection)

    def set_findings(self, findings: FindingSet | None) -> None:
        self.findings = findings
        if findings is not None:
            findings.changed.connect(lambda _f: self.refresh())
            findings.reset.connect(lambda _s: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        items: list[Finding] = list(self.findings) if self.findings is not None else []
        items.sort(key=lambda f: -f.probability)
        self.blockSignals(True)
        self.setRowCount(len(items))
        self._ids = [f.finding_id for f in items]
        for row, f in enumerate(items):
            values = (
                str(row + 1),
                "" if f.slice_index is None else str(f.slice_index + 1),
                "" if f.diameter_mm is None else f"{f.diameter_mm:.1f}",
                f"{f.probability:.0%}",
                str(f.attributes.get("type", f.label)),
                f"{f.model_id} {f.model_version}",
                f.status.value,
            )
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col == len(values) - 1:
                    item.setForeground(QColor(*STATUS_COLORS[f.status]))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.setItem(row, col, item)
        self.blockSignals(False)
        self._follow_selection(self.nav.selected_finding)

    def _on_select(self) -> None:
        rows = {i.row() for i in self.selectedIndexes()}
        if not rows or self.findings is None:
            return
        finding = self.findings.get(self._ids[min(rows)])
        self.nav.select(finding.finding_id)
        if finding.center_mm is not None:
            self.nav.move_to(finding.center_mm)

    def _follow_selection(self, finding_id: str | None) -> None:
        if finding_id in self._ids:
            row = self._ids.index(finding_id)
            if row not in {i.row() for i in self.selectedIndexes()}:
                self.blockSignals(True)
                self.selectRow(row)
                self.blockSignals(False)
