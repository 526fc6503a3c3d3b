"""StudyBrowserPanel: the local archive and a PACS query panel (node, filters, results,
retrieve with progress and cancel). Double-click opens a study."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pydicom
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.frames import open_frames
from viewers.tasks import run_task
from viewers.theme import icon

LOCAL_COLUMNS = ("Patient", "ID", "Date", "Description", "Mod", "Images", "AI", "State")
REMOTE_COLUMNS = ("Patient", "ID", "Date", "Description", "Mod", "Images")


def thumbnail(path: str, size: int = 96) -> QPixmap:
    """A small image of one instance (lung window for CT; colour images through
    core.frames, the decoder the viewer and the AI share), or an empty pixmap."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        colour = int(ds.get("SamplesPerPixel", 1) or 1) == 3 or (
            str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR"
        )
        if colour:
            arr = open_frames([path]).rgb(0)
        else:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
    except Exception:
        return QPixmap()
    if arr.ndim == 4 or (arr.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1):
        arr = arr[0]
    if arr.ndim == 3:  # RGB
        rgb = np.ascontiguousarray(
            arr[:: max(1, arr.shape[0] // size), :: max(1, arr.shape[1] // size)].astype(np.uint8)
        )
        img = QImage(
            rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888
        )
    else:
        hu = arr * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        lo, hi = (-1350.0, 150.0) if ds.get("Modality") == "CT" else (hu.min(), hu.max())
        grey = np.ascontiguousarray(
            np.clip((hu - lo) / max(hi - lo, 1) * 255, 0, 255).astype(np.uint8)
        )
        img = QImage(
            grey.data, grey.shape[1], grey.shape[0], grey.shape[1], QImage.Format.Format_Grayscale8
        )
    return QPixmap.fromImage(img.copy()).scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


class StudyServices(Protocol):
    """What the browser needs from the archive and the network, as plain callables (the
    application supplies them: app/study_services.py); the browser imports no networking."""

    def studies(self) -> list[Any]:
        """Local studies (study_instance_uid, patient_name, patient_id, study_date,
        study_description, modalities, instance_count, retrieve_state, missing_instances)."""
        ...

    def series(self, study_uid: str) -> list[Any]:
        """A local study's series (series_instance_uid, modality, series_number,
        series_description, instance_count)."""
        ...

    def middle_image(self, series_uid: str) -> str | None:
        """Path of a series' middle image, for its thumbnail."""
        ...

    def nodes(self) -> list[tuple[str, str]]:
        """(name, label) of each PACS node."""
        ...

    def describe_node(self, name: str) -> str: ...

    def search(self, node: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        """Study-level query (filters: patient_id, patient_name, modality, study_date);
        ValueError for a filter that is not valid."""
        ...

    def retrieve(
        self,
        node: str,
        study_uid: str,
        cancel: threading.Event,
        progress: Callable[[Any], None],
    ) -> Any:
        """Bring a study here; the result has present, expected, method, seconds, notes.
        Progress items have completed and remaining."""
        ...


class StudyBrowserPanel(QTabWidget):
    open_study = Signal(str)  # Study Instance UID
    retrieved = Signal(object)  # the retrieve result

    def __init__(
        self,
        services: StudyServices,
        *,
        ai_status: Callable[[str], str] | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.services = services
        self.ai_status = ai_status or (lambda _uid: "")
        self._studies: list[Any] = []
        self._remote: list[dict[str, Any]] = []
        self._cancel: threading.Event | None = None
        self.addTab(self._build_local(), icon("fa5s.hdd"), "Local")
        self.addTab(self._build_remote(), icon("fa5s.network-wired"), "PACS")
        self.refresh_local()

    # -- local ------------------------------------------------------------------------------
    def _build_local(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.local_table = self._table(LOCAL_COLUMNS)
        self.local_table.cellDoubleClicked.connect(
            lambda row, _c: self.open_study.emit(self._studies[row].study_instance_uid)
        )
        self.local_table.itemSelectionChanged.connect(self._show_series)
        self.series_list = QListWidget()
        self.series_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.series_list.setIconSize(QSize(96, 96))
        self.series_list.setFixedHeight(150)
        self.series_list.setFlow(QListWidget.Flow.LeftToRight)
        refresh = QPushButton(icon("fa5s.sync"), "Refresh")
        refresh.clicked.connect(self.refresh_local)
        lay.addWidget(self.local_table, 1)
        lay.addWidget(QLabel("Series"))
        lay.addWidget(self.series_list)
        lay.addWidget(refresh)
        return w

    def _table(self, columns: tuple[str, ...]) -> QTableWidget:
        t = QTableWidget(0, len(columns))
        t.setHorizontalHeaderLabels(list(columns))
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setStretchLastSection(True)
        return t

    def refresh_local(self) -> None:
        self._studies = self.services.studies()
        t = self.local_table
        t.setRowCount(len(self._studies))
        for row, s in enumerate(self._studies):
            state = s.retrieve_state or "local"
            if s.missing_instances:
                state += f" ({s.missing_instances} missing)"
            values = (
                s.patient_name.replace("^", " "),
                s.patient_id,
                _date(s.study_date),
                s.study_description,
                "/".join(s.modalities),
                str(s.instance_count),
                self.ai_status(s.study_instance_uid),
                state,
            )
            for col, text in enumerate(values):
                t.setItem(row, col, QTableWidgetItem(text))
        t.resizeColumnsToContents()

    def _show_series(self) -> None:
        rows = {i.row() for i in self.local_table.selectedIndexes()}
        self.series_list.clear()
        if not rows:
            return
        study = self._studies[min(rows)]
        for series in self.services.series(study.study_instance_uid):
            item = QListWidgetItem(
                f"{series.modality} {series.series_number or ''}\n"
                f"{series.series_description[:18]}\n{series.instance_count} img"
            )
            self.series_list.addItem(item)
            middle = self.services.middle_image(series.series_instance_uid)
            if middle:
                self._thumbnail(item, middle)

    def _thumbnail(self, item: QListWidgetItem, path: str) -> None:
        def set_icon(pixmap: QPixmap) -> None:
            item.setIcon(QIcon(pixmap))

        run_task(lambda _p: thumbnail(path), on_done=set_icon)

    # -- PACS ---------------------------------------------------------------------------------
    def _build_remote(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        form = QFormLayout()
        self.node_box = QComboBox()
        nodes = self.services.nodes()
        for name, label in nodes:
            self.node_box.addItem(label, name)
        self.f_patient_id = QLineEdit()
        self.f_patient_name = QLineEdit()
        self.f_patient_name.setPlaceholderText("wildcards: Doe*")
        self.f_date = QLineEdit()
        self.f_date.setPlaceholderText("YYYYMMDD-YYYYMMDD, today, last7days")
        self.f_modality = QLineEdit()
        self.f_modality.setPlaceholderText("CT, ES ...")
        form.addRow("Node", self.node_box)
        form.addRow("Patient ID", self.f_patient_id)
        form.addRow("Name", self.f_patient_name)
        form.addRow("Date", self.f_date)
        form.addRow("Modality", self.f_modality)
        search = QPushButton(icon("fa5s.search"), "Search")
        search.clicked.connect(self.search)
        self.remote_table = self._table(REMOTE_COLUMNS)
        self.remote_table.cellDoubleClicked.connect(lambda _r, _c: self.retrieve_selected())
        self.retrieve_button = QPushButton(icon("fa5s.download"), "Retrieve")
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.cancel_button = QPushButton(icon("fa5s.stop"), "Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_retrieve)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.remote_status = QLabel("")
        self.remote_status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.retrieve_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(form)
        lay.addWidget(search)
        lay.addWidget(self.remote_table, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.remote_status)
        if not nodes:
            self.remote_status.setText("No PACS node configured: add [[nodes]] to the settings.")
            search.setEnabled(False)
        return w

    def _node(self) -> str:
        return str(self.node_box.currentData())

    def search(self) -> None:
        node = self._node()
        filters = {
            "patient_id": self.f_patient_id.text().strip(),
            "patient_name": self.f_patient_name.text().strip(),
            "modality": self.f_modality.text().strip(),
            "study_date": self.f_date.text().strip(),
        }
        self.remote_status.setText(f"Searching {self.services.describe_node(node)} ...")
        run_task(
            lambda _p: self.services.search(node, filters),
            on_done=self._show_remote,
            on_failed=self.remote_status.setText,
        )

    def _show_remote(self, rows: list[dict[str, Any]]) -> None:
        self._remote = rows
        t = self.remote_table
        t.setRowCount(len(rows))
        for row, r in enumerate(rows):
            values = (
                str(r.get("PatientName", "")).replace("^", " "),
                r.get("PatientID", ""),
                _date(r.get("StudyDate", "")),
                r.get("StudyDescription", ""),
                r.get("ModalitiesInStudy", ""),
                str(r.get("NumberOfStudyRelatedInstances") or ""),
            )
            for col, text in enumerate(values):
                t.setItem(row, col, QTableWidgetItem(str(text)))
        t.resizeColumnsToContents()
        self.remote_status.setText(f"{len(rows)} studies")

    def retrieve_selected(self) -> None:
        rows = {i.row() for i in self.remote_table.selectedIndexes()}
        if not rows or self._cancel is not None:
            return
        study = self._remote[min(rows)]
        node = self._node()
        uid = study["StudyInstanceUID"]
        total = study.get("NumberOfStudyRelatedInstances") or 0
        self.progress.setRange(0, int(total) or 0)
        self.progress.setValue(0)
        cancel = threading.Event()
        self._cancel = cancel
        self.cancel_button.setEnabled(True)
        self.retrieve_button.setEnabled(False)
        self.remote_status.setText(f"Retrieving from {self.services.describe_node(node)} ...")

        def work(progress: Callable[[Any], None]) -> Any:
            return self.services.retrieve(node, uid, cancel, progress)

        run_task(
            work,
            on_done=self._retrieve_done,
            on_failed=self._retrieve_failed,
            on_progress=self._retrieve_progress,
        )

    def _retrieve_progress(self, p: Any) -> None:
        if p.remaining is not None:
            self.progress.setRange(0, p.completed + p.remaining)
        self.progress.setValue(p.completed)

    def _retrieve_finished(self) -> None:
        self._cancel = None
        self.cancel_button.setEnabled(False)
        self.retrieve_button.setEnabled(True)
        self.refresh_local()

    def _retrieve_done(self, result: Any) -> None:
        self._retrieve_finished()
        self.progress.setValue(self.progress.maximum())
        extra = "; " + "; ".join(result.notes) if result.notes else ""
        self.remote_status.setText(
            f"Retrieved {result.present}/{result.expected} instances by "
            f"{result.method.upper()} in {result.seconds:.1f} s{extra}"
        )
        self.retrieved.emit(result)

    def _retrieve_failed(self, message: str) -> None:
        self._retrieve_finished()
        self.remote_status.setText(message)

    def cancel_retrieve(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.remote_status.setText("Cancelling ...")


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d
