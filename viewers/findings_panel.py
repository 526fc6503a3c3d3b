"""FindingsPanel: the findings (number, status, probability, diameter, slice, type, comment,
model), sortable by any column, filterable to the pending ones; selecting one moves every
pane there."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.display import STATUS_COLORS
from core.findings import Finding, FindingSet, ReviewStatus, numbers
from core.navigation import Cursor

# Status right after the number: always in view, however narrow the dock (the model and the
# comment, least needed while reviewing, come last).
COLUMNS = ("#", "Status", "P", "Ø mm", "Slice", "Type", "Comment", "Model")
_STATUS_COL = COLUMNS.index("Status")
# Rows look like their decision: accepted/modified/added tinted in their colour, rejected
# ones greyed and struck through, pending ones plain.
_ROW_TINT_ALPHA = 48
_ID_ROLE = Qt.ItemDataRole.UserRole + 1


class _NumberItem(QTableWidgetItem):
    """Sorts by its number, not its text."""

    def __init__(self, text: str, value: float):
        super().__init__(text)
        self.setData(Qt.ItemDataRole.UserRole, value)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a = self.data(Qt.ItemDataRole.UserRole)
        b = other.data(Qt.ItemDataRole.UserRole)
        if isinstance(a, int | float) and isinstance(b, int | float):
            return a < b
        return super().__lt__(other)


def _where(f: Finding, frame_number: Callable[[Finding], int | None] | None) -> QTableWidgetItem:
    """The slice (CT) or frame (endoscopy) column: where selecting the row takes the reader.
    Frames are numbered as the thumbnails show them (`frame_number`), else by their number
    within their instance."""
    if f.center_mm is None and f.frame is not None:
        n = frame_number(f) if frame_number is not None else None
        n = f.frame if n is None else n
        return _NumberItem(str(n), n)
    return _NumberItem(
        "" if f.slice_index is None else str(f.slice_index + 1),
        -1 if f.slice_index is None else f.slice_index,
    )


def _style_row_item(item: QTableWidgetItem, status: ReviewStatus, colour: QColor) -> None:
    if status is ReviewStatus.PENDING:
        return
    if status is ReviewStatus.REJECTED:
        font = item.font()
        font.setStrikeOut(True)
        item.setFont(font)
        item.setForeground(QColor(140, 140, 140))
        return
    tint = QColor(colour)
    tint.setAlpha(_ROW_TINT_ALPHA)
    item.setBackground(tint)


class FindingsPanel(QWidget):
    def __init__(self, cursor: Cursor, parent: QWidget | None = None):
        super().__init__(parent)
        self.nav = cursor
        self.findings: FindingSet | None = None
        # Endoscopy: the number a frame finding's frame has in the thumbnail strip.
        self.frame_number: Callable[[Finding], int | None] | None = None
        self.pending_only = QCheckBox("Pending only")
        self.pending_only.toggled.connect(lambda _on: self.refresh())
        self.summary = QLabel("")
        self.table = QTableWidget(0, len(COLUMNS))
        t = self.table
        t.setHorizontalHeaderLabels(list(COLUMNS))
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.verticalHeader().setVisible(False)
        header = t.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(28)
        t.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        t.itemSelectionChanged.connect(self._on_select)
        t.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.pending_only)
        lay.addWidget(t, 1)
        lay.addWidget(self.summary)
        cursor.selection_changed.connect(self._follow_selection)

    def set_findings(self, findings: FindingSet | None) -> None:
        self.findings = findings
        if findings is not None:
            findings.changed.connect(lambda _f: self.refresh())
            findings.reset.connect(lambda _s: self.refresh())
        self.refresh()

    def row_ids(self) -> list[str]:
        """Finding ids in the order the rows show (after sorting and filtering)."""
        out = []
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None:
                out.append(str(item.data(_ID_ROLE)))
        return out

    def refresh(self) -> None:
        everything: list[Finding] = list(self.findings) if self.findings is not None else []
        ranked = sorted(everything, key=lambda f: -f.probability)
        number = numbers(everything)  # stable: the same on markers, in dialogs and reports
        shown = [
            f
            for f in ranked
            if not self.pending_only.isChecked() or f.status is ReviewStatus.PENDING
        ]
        t = self.table
        frames = bool(everything) and all(f.center_mm is None for f in everything)
        where = COLUMNS.index("Slice")
        header_item = t.horizontalHeaderItem(where)
        if header_item is not None:
            header_item.setText("Frame" if frames else "Slice")
        # Diameter means nothing for a frame finding: hidden in endoscopy review.
        t.setColumnHidden(COLUMNS.index("Ø mm"), frames)
        t.blockSignals(True)
        t.setSortingEnabled(False)
        t.setRowCount(len(shown))
        for row, f in enumerate(shown):
            items = [
                _NumberItem(str(number[f.finding_id]), number[f.finding_id]),
                QTableWidgetItem(f.status.value),
                # A reader-added finding has no AI probability: "reader", not "100%".
                _NumberItem(
                    "reader" if f.status is ReviewStatus.ADDED else f"{f.probability:.0%}",
                    f.probability,
                ),
                _NumberItem(
                    "" if f.diameter_mm is None else f"{f.diameter_mm:.1f}", f.diameter_mm or 0.0
                ),
                _where(f, self.frame_number),
                QTableWidgetItem(str(f.attributes.get("type", f.label))),
                QTableWidgetItem(f.comment),
                QTableWidgetItem(f"{f.model_id} {f.model_version}"),
            ]
            colour = QColor(*STATUS_COLORS[f.status])
            items[_STATUS_COL].setForeground(colour)
            items[0].setData(_ID_ROLE, f.finding_id)
            for col, item in enumerate(items):
                if col < 5:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                _style_row_item(item, f.status, colour)
                t.setItem(row, col, item)
        t.setSortingEnabled(True)
        t.blockSignals(False)
        pending = sum(f.status is ReviewStatus.PENDING for f in everything)
        self.summary.setText(f"{len(everything)} findings, {pending} pending")
        self._follow_selection(self.nav.selected_finding)

    def _on_select(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if not rows or self.findings is None:
            return
        finding = self.findings.get(self.row_ids()[min(rows)])
        self.nav.select(finding.finding_id)
        if finding.center_mm is not None:
            self.nav.move_to(finding.center_mm)

    def _follow_selection(self, finding_id: str | None) -> None:
        ids = self.row_ids()
        if finding_id in ids:
            row = ids.index(finding_id)
            if row not in {i.row() for i in self.table.selectedIndexes()}:
                self.table.blockSignals(True)
                self.table.selectRow(row)
                self.table.blockSignals(False)
