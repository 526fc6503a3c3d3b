"""The reading workstation window: study browser, reading panes, findings and heatmap
controls, wired to the archive, the storage SCP and the outbox."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.reading_session import (
    FRAME_CLASSES,
    FirstImage,
    Loaded,
    ReadingSession,
    pick_ct_series,
)
from app.settings import Settings
from app.study_services import ArchiveStudyServices
from core.display import WINDOW_PRESETS, AiVisibility, HeatmapLayer, WindowLevel
from core.findings import FindingSet, ReviewStatus
from core.navigation import Cursor
from core.review import ReviewSession
from core.volume import Volume
from dicom_net.archive import InstanceRecord, LocalArchive
from dicom_net.errors import DicomNetError
from dicom_net.outbox import Outbox, OutboxWorker
from dicom_net.storage_server import StorageServer
from viewers.elided_label import ElidedLabel
from viewers.findings_panel import FindingsPanel
from viewers.heatmap_controls import HeatmapControlsPanel
from viewers.reading_view import Layout, ReadingView
from viewers.slice_view import PriorMark, Tool
from viewers.study_browser import StudyBrowserPanel
from viewers.tasks import run_task
from viewers.theme import apply_dark_theme, icon

log = logging.getLogger(__name__)

SHORTCUTS = [
    ("Mouse wheel / Up, Down", "previous / next slice (PgUp/PgDn: 10)"),
    ("Left-drag", "window / level"),
    ("Left-click", "crosshair here; on a marker: select the finding"),
    ("Right-drag", "zoom"),
    ("Middle-drag", "pan"),
    *[(p.key, f"{p.name} window (L {p.center:.0f} / W {p.width:.0f})") for p in WINDOW_PRESETS],
    ("H", "show / hide all AI (markers and heatmaps)"),
    ("F2 / F3 / F4", "layout: 1x1 / slice + heatmap / MPR + 3D"),
    ("M / O / Esc", "length tool / ROI (mean, SD HU) / back to navigation"),
    ("A / R", "accept / reject the selected finding (then the next pending one)"),
    ("N, Right / P, Left", "next / previous finding"),
    ("Drag the selected marker", "inside: move its centre; on the ring: change its diameter"),
    ("F", "add a finding the AI missed: click its centre, drag its radius"),
    ("C", "comment on the selected finding"),
    ("A / R / K (endoscopy)", "confirm / reject the frame as a lesion; choose as key image"),
    ("Space (endoscopy)", "cine: play / pause the frames"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo the last review edit (kept in the audit log)"),
    ("Z", "reset zoom and pan"),
    ("F5", "analyse with the model that applies (runs on open by default)"),
    ("Ctrl+S", "sign and send: the reports to the report destination"),
    ("F1", "this sheet"),
]


class Workstation(QMainWindow):
    def __init__(self, settings: Settings, archive: LocalArchive):
        super().__init__()
        self.settings = settings
        self.archive = archive
        self.setWindowTitle("Loupe")
        self.banner: Any = None  # core.patient_banner.PatientBanner of the study on screen
        self.window_level = WindowLevel()
        self.nav = Cursor()
        self.ai = AiVisibility()
        self.heatmap_layer = HeatmapLayer()
        self.findings = FindingSet()
        self.volume: Volume | None = None
        self.study_uid: str | None = None
        self.loaded_at: float | None = None
        self.server: StorageServer | None = None
        self.outbox_worker: OutboxWorker | None = None
        self._load_cancel: threading.Event | None = None
        self.first_image_s: float | None = None
        self.stored_shown_s: float | None = None  # when a stored analysis was put on screen
        self.endoscopy: Any = None
        self.review_frames: list[Any] = []
        self.engine: Any = None
        self.last_report: Any = None
        self.prior_producers: list[str] = []
        self.analysis: Any = None
        self.analysis_error: str | None = None
        self._ai_cancel: threading.Event | None = None
        inference_settings = settings.extra.get("inference", {})
        self.analyze_on_open = bool(inference_settings.get("analyze_on_open", True))

        self.reading = ReadingView(self.window_level, self.nav, self.ai, self.heatmap_layer)
        self.reading.set_findings(self.findings)
        self.nav.selection_changed.connect(self._follow_finding_to_frame)
        # The reading logic, Qt-free (app/reading_session.py); this window wires widgets to it.
        self.session = ReadingSession(settings, archive)
        self.review_store = self.session.review_store
        self.review: ReviewSession | None = None
        for view in self.reading.slice_views:
            view.finding_edited.connect(self._finding_edited)
            view.finding_drawn.connect(self._finding_drawn)
        self.placeholder = QLabel("Double-click a study to open it")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.center = QStackedWidget()
        self.center.addWidget(self.placeholder)
        self.center.addWidget(self.reading)
        self.setCentralWidget(self.center)

        self.study_services = ArchiveStudyServices(archive, settings.local, settings.nodes)
        self.browser = StudyBrowserPanel(self.study_services, ai_status=self.ai_status_of)
        self.browser.open_study.connect(self.open_study)
        studies_dock = self._dock("Studies", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.findings_panel = FindingsPanel(self.nav)
        self.findings_panel.set_findings(self.findings)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.findings_panel, 1)
        rl.addWidget(HeatmapControlsPanel(self.heatmap_layer))
        findings_dock = self._dock("Findings", right, Qt.DockWidgetArea.RightDockWidgetArea)
        self._build_toolbar()
        self.status = self.statusBar()
        self.ai_progress = QProgressBar()
        self.ai_progress.setRange(0, 100)
        self.ai_progress.setMaximumWidth(180)
        self.ai_progress.hide()
        self.ai_cancel_button = QToolButton()
        self.ai_cancel_button.setIcon(icon("fa5s.stop"))
        self.ai_cancel_button.setToolTip("Cancel the analysis")
        self.ai_cancel_button.clicked.connect(self.cancel_analysis)
        self.ai_cancel_button.hide()
        self.device_label = ElidedLabel("AI: no analysis yet")
        # Which findings are shown: the model's validated operating points, or every
        # candidate; and what that means, always visible (not a transient message).
        self.point_box = QComboBox()
        self.point_box.setToolTip("AI operating point: which findings are shown")
        self.point_box.currentIndexChanged.connect(self._point_chosen)
        self.point_box.hide()
        self.ai_summary_label = ElidedLabel("")
        self.status.addPermanentWidget(self.ai_progress)
        self.status.addPermanentWidget(self.ai_cancel_button)
        self.outbox_label = ElidedLabel("")
        self.status.addPermanentWidget(self.outbox_label)
        self.status.addPermanentWidget(self.ai_summary_label)
        self.status.addPermanentWidget(self.point_box)
        self.status.addPermanentWidget(self.device_label)
        self._outbox_timer = QTimer(self)
        self._outbox_timer.timeout.connect(self.refresh_outbox_state)
        self._outbox_timer.start(2000)
        # Fit the screen it opens on (a 1280 x 720 reading-room screen included), never more.
        screen = QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        width = min(1600, avail.width()) if avail is not None else 1600
        height = min(960, avail.height()) if avail is not None else 960
        self.resize(width, height)
        self.resizeDocks(
            [studies_dock, findings_dock],
            [round(width * 0.22), round(width * 0.22)],
            Qt.Orientation.Horizontal,
        )

    def ai_status_of(self, study_uid: str) -> str:
        series = {s.series_instance_uid for s in self.archive.series(study_uid)}
        return self.review_store.status_of(series)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(area, dock)
        return dock

    def _action(
        self, text: str, icon_name: str, shortcut: str | None, slot: Any, checkable: bool = False
    ) -> QAction:
        a = QAction(icon(icon_name), text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.setToolTip(f"{text} ({shortcut})")
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _build_toolbar(self) -> None:
        tb = QToolBar("Reading")
        tb.setObjectName("reading-toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.addToolBar(tb)
        layouts = QActionGroup(self)
        for text, ic, key, mode in (
            ("1x1", "fa5s.square", "F2", Layout.SINGLE),
            ("Slice + heatmap", "fa5s.columns", "F3", Layout.SIDE_BY_SIDE),
            ("MPR + 3D", "fa5s.th-large", "F4", Layout.MPR),
        ):
            a = self._action(text, ic, key, lambda _c=False, m=mode: self.set_layout(m), True)
            a.setChecked(mode is self.reading.layout_mode)
            layouts.addAction(a)
            tb.addAction(a)
        tb.addSeparator()
        for preset in WINDOW_PRESETS:
            a = self._action(
                preset.name,
                "fa5s.adjust",
                preset.key,
                lambda _c=False, n=preset.name: self.window_level.apply_preset(n),
            )
            tb.addAction(a)
        tb.addSeparator()
        self.ai_action = self._action("AI overlays", "fa5s.eye", "H", self.ai.toggle, True)
        self.ai_action.setChecked(True)
        self.ai.changed.connect(self.ai_action.setChecked)
        tb.addAction(self.ai_action)
        tb.addSeparator()
        tb.addAction(
            self._action("Length", "fa5s.ruler", "M", lambda: self.reading.set_tool(Tool.LENGTH))
        )
        tb.addAction(
            self._action("ROI", "fa5.circle", "O", lambda: self.reading.set_tool(Tool.ROI))
        )
        tb.addAction(
            self._action(
                "Navigate",
                "fa5s.mouse-pointer",
                "Esc",
                lambda: self.reading.set_tool(Tool.NAVIGATE),
            )
        )
        tb.addAction(self._action("Reset view", "fa5s.expand", "Z", self.reading.reset_views))
        tb.addSeparator()
        tb.addAction(self._action("Analyse", "fa5s.brain", "F5", self.analyze))
        tb.addSeparator()
        tb.addAction(self._action("Shortcuts", "fa5s.keyboard", "F1", self.show_shortcuts))
        tb.addAction(self._action("About", "fa5s.info-circle", None, self.show_about))
        # Review on a second row, where the reader's eye goes after the image.
        self.addToolBarBreak()
        tb = QToolBar("Review")
        tb.setObjectName("review-toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.addToolBar(tb)
        tb.addAction(self._action("Accept", "fa5s.check", "A", self.accept_selected))
        tb.addAction(self._action("Reject", "fa5s.times", "R", self.reject_selected))
        self._action("Next finding", "fa5s.step-forward", "N", lambda: self.step_finding(1))
        self._action("Previous finding", "fa5s.step-backward", "P", lambda: self.step_finding(-1))
        self._action("Next finding ", "fa5s.step-forward", "Right", lambda: self.step_finding(1))
        self._action(
            "Previous finding ", "fa5s.step-backward", "Left", lambda: self.step_finding(-1)
        )
        tb.addAction(
            self._action(
                "Add finding",
                "fa5s.plus-circle",
                "F",
                lambda: self.reading.set_tool(Tool.ADD_FINDING),
            )
        )
        self._action("Comment", "fa5s.comment", "C", self.comment_selected)
        self._action("Undo", "fa5s.undo", "Ctrl+Z", self.undo_review)
        self._action("Redo", "fa5s.redo", "Ctrl+Shift+Z", self.redo_review)
        self._action("Key image", "fa5s.star", "K", self.toggle_key_image)
        tb.addSeparator()
        tb.addAction(
            self._action("Sign && send", "fa5s.file-signature", "Ctrl+S", self.sign_and_send)
        )

    def resizeEvent(self, event: Any) -> None:
        """Narrow screens (1280, 1366 px): toolbar buttons show their text only, so every
        tool stays in view (icons come back when there is room)."""
        style = (
            Qt.ToolButtonStyle.ToolButtonTextOnly
            if self.width() < 1500
            else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        )
        for tb in self.findChildren(QToolBar):
            if tb.toolButtonStyle() != style:
                tb.setToolButtonStyle(style)
        super().resizeEvent(event)

    def set_layout(self, mode: Layout) -> None:
        self.reading.set_layout(mode)

    def show_about(self) -> None:
        """Versions, the AI device in use, and each installed model's card."""
        from PySide6.QtWidgets import QDialog, QPlainTextEdit, QTabWidget, QVBoxLayout

        from app.about import about_text, models

        dialog = QDialog(self)
        dialog.setWindowTitle("About Loupe")
        tabs = QTabWidget(dialog)
        for title, text in [("Loupe", about_text(self.analysis)), *models()]:
            view = QPlainTextEdit(text)
            view.setReadOnly(True)
            tabs.addTab(view, title)
        lay = QVBoxLayout(dialog)
        lay.addWidget(tabs)
        screen = self.screen().availableGeometry()
        dialog.resize(min(900, screen.width() - 40), min(640, screen.height() - 40))
        self.about_dialog = dialog  # tests read it
        dialog.open()

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        QMessageBox.information(self, "Shortcuts", f"<table cellpadding=3>{rows}</table>")

    # -- services ---------------------------------------------------------------------------
    def start_services(self) -> None:
        """Our storage SCP and the outbox run while the workstation runs."""
        server = StorageServer(
            self.archive,
            self.settings.local,
            node_for_ae=self.settings.node_for_ae,
            limits=self.settings.receiver_limits,
        )
        try:
            server.start()
            self.server = server
            self.study_services.ingest = server.ingest
            self.status.showMessage(
                f"{self.settings.local.ae_title} receiving on port {server.port}", 8000
            )
        except DicomNetError as exc:
            self.status.showMessage(f"Receiver not started: {exc}")
        self.outbox_worker = OutboxWorker(
            Outbox(self.archive), self.settings.local, self.settings.nodes_by_name
        )
        self.outbox_worker.start()

    def stop_services(self) -> None:
        if self.outbox_worker is not None:
            self.outbox_worker.stop()
        if self.server is not None:
            self.server.stop()

    def closeEvent(self, event: Any) -> None:
        self.stop_services()
        super().closeEvent(event)

    # -- studies ----------------------------------------------------------------------------
    def open_study(self, study_uid: str) -> None:
        instances = self.archive.instances(study_instance_uid=study_uid)
        if not instances:
            self.status.showMessage(f"Study {study_uid} is not in the local archive")
            return
        self.study_uid = study_uid
        series = pick_ct_series(instances)
        if not series:
            frames = [i for i in instances if i.sop_class_uid in FRAME_CLASSES]
            if frames:
                self.open_frames(frames)
            else:
                self.status.showMessage("Nothing Loupe can show in this study (no CT, no frames)")
            return
        paths = [i.path for i in series]
        self._show_patient(paths[0])
        self.status.showMessage(f"Loading {len(paths)} images ...")
        if self._load_cancel is not None:
            self._load_cancel.set()  # a newer study wins
        cancel = threading.Event()
        self._load_cancel = cancel
        started = time.perf_counter()
        self.first_image_s = None
        self.stored_shown_s = None
        self.analysis = None

        def load(progress: Any) -> Volume:
            volume: Volume | None = None
            for event in self.session.load(paths, cancel=cancel.is_set):
                if isinstance(event, Loaded):
                    volume = event.volume
                else:
                    progress(event)
            assert volume is not None
            return volume

        def on_progress(event: Any) -> None:
            if cancel.is_set():
                return
            if isinstance(event, FirstImage):
                self.first_image_s = time.perf_counter() - started
                self.show_volume(event.volume)
                if self.analyze_on_open:
                    self._show_stored_analysis(event.volume)
            else:
                self.reading.refresh()
                self.status.showMessage(f"Loading: {event.done} of {event.total} images ...")

        def done(volume: Volume) -> None:
            if cancel.is_set():
                return
            self.loaded_at = time.perf_counter()
            self.show_volume(volume, keep_position=True)
            msg = (
                f"Loaded {volume.shape[0]} slices in {self.loaded_at - started:.1f} s "
                f"(first image after {self.first_image_s or 0:.2f} s)"
            )
            if volume.warnings:
                msg += " - " + "; ".join(volume.warnings)
            self.status.showMessage(msg)
            self.load_prior_results(study_uid, volume)
            shown = self.analysis is not None and self.stored_shown_s is not None
            if self.analyze_on_open and not shown:
                self.analyze()

        def failed(message: str) -> None:
            if not cancel.is_set():
                self.status.showMessage(f"Cannot open study: {message}")

        run_task(load, on_done=done, on_failed=failed, on_progress=on_progress)

    def _show_patient(self, path: Path) -> None:
        """Who is on screen, in the title and the image corners, before any pixel shows."""
        from core.patient_banner import PatientBanner

        banner: PatientBanner | None
        try:
            banner = PatientBanner.from_file(path)
        except Exception as exc:  # an unreadable header must not stop the study opening
            self.setWindowTitle("Loupe - patient unknown (header unreadable)")
            self.status.showMessage(f"Cannot read the patient header: {exc}")
            banner = None
        else:
            self.setWindowTitle(banner.title())
        self.banner = banner
        self.reading.set_banner(banner)

    def open_frames(self, instances: list[InstanceRecord]) -> None:
        """Endoscopy review: every frame of the study, decoded off the GUI thread."""
        from viewers.endoscopy_view import ReviewFrame

        paths = [i.path for i in sorted(instances, key=lambda i: i.instance_number or 0)]
        self._show_patient(paths[0])
        self.status.showMessage(f"Loading {len(paths)} endoscopy images ...")

        def load(_progress: Any) -> tuple[list[ReviewFrame], tuple[str, ...]]:
            from core.frames import open_frames

            seq = open_frames(paths)
            frames = []
            for n, ref in enumerate(seq):
                frames.append(
                    ReviewFrame(ref.key.sop_instance_uid, ref.key.frame_number, seq.rgb(n))
                )
            return frames, tuple(seq.warnings)

        def done(result: tuple[list[ReviewFrame], tuple[str, ...]]) -> None:
            frames, warnings = result
            panel = self._endoscopy_panel()
            panel.set_frames(frames)
            self.center.setCurrentWidget(panel)
            self.review_frames = frames
            self.review_series_uid = next(
                (i.series_instance_uid for i in instances if i.path == paths[0]), ""
            )
            msg = f"{len(frames)} endoscopy frames"
            if warnings:
                msg += " - " + "; ".join(warnings)
            self.status.showMessage(msg)
            if self.analyze_on_open:
                self.analyze()

        run_task(
            load,
            on_done=done,
            on_failed=lambda m: self.status.showMessage(f"Cannot open frames: {m}"),
        )

    # -- AI -------------------------------------------------------------------------------------
    def _engine(self) -> Any:
        self.engine = self.session.engine
        return self.engine

    def analyze(self) -> None:
        """Run the model that applies to what is open, off the GUI thread, with progress."""
        if self._ai_cancel is not None:
            return  # one analysis at a time
        showing_frames = self.center.currentWidget() is self.endoscopy and self.review_frames
        if not showing_frames and self.volume is None:
            self.status.showMessage("Open a study first")
            return
        cancel = threading.Event()
        self._ai_cancel = cancel
        self.analysis_error = None
        self.ai_progress.setValue(0)
        self.ai_progress.show()
        self.ai_cancel_button.show()
        self.device_label.setText("AI: analysing ...")
        volume = self.volume
        frames = list(self.review_frames) if showing_frames else []
        series_uid = getattr(self, "review_series_uid", "")

        def work(progress: Any) -> tuple[Any, Any]:
            def report(fraction: float, message: str) -> None:
                progress((fraction, message))

            if frames:
                raw = [(f.rgb, f.sop_instance_uid, f.frame) for f in frames]
                analysis = self.session.analyse_frames(raw, series_uid, report, cancel)
                return analysis, None
            assert volume is not None
            analysis = self.session.analyse_volume(volume, report, cancel)
            return analysis, self.session.heat_on_grid(analysis, volume)

        def on_progress(value: tuple[float, str]) -> None:
            fraction, message = value
            self.ai_progress.setValue(round(fraction * 100))
            self.status.showMessage(f"AI: {message}")

        run_task(
            work,
            on_done=self._analysis_done,
            on_failed=self._analysis_failed,
            on_progress=on_progress,
        )

    def _show_stored_analysis(self, volume: Volume) -> None:
        """A series this model version analysed before (here, by `loupe analyze`, or on
        arrival): its findings and heatmap with the first image, not after the whole series
        has loaded (the stored result was made from the same grid: input_key)."""
        stored = self.session.stored_analysis(volume)
        if stored is None:
            return  # no model applies, or nothing stored: the usual analysis follows
        # Findings first; the heatmap (resampled onto the CT grid, about a second for 300
        # slices) follows off the GUI thread.
        self._analysis_done((stored, None))
        self.stored_shown_s = time.perf_counter()

        def heat_ready(heat: Any) -> None:
            if self.analysis is stored and self.volume is not None and heat is not None:
                self.reading.set_heatmap(heat)

        run_task(lambda _p: self.session.heat_on_grid(stored, volume), on_done=heat_ready)

    def cancel_analysis(self) -> None:
        if self._ai_cancel is not None:
            self._ai_cancel.set()
            self.status.showMessage("AI: cancelling ...")

    def _analysis_finished(self) -> None:
        self._ai_cancel = None
        self.ai_progress.hide()
        self.ai_cancel_button.hide()

    def _analysis_done(self, result: tuple[Any, Any]) -> None:
        cancelled = self._ai_cancel is not None and self._ai_cancel.is_set()
        self._analysis_finished()
        if cancelled:
            self.device_label.setText("AI: cancelled")
            return
        analysis, heat = result
        self.analysis = analysis
        m = analysis.model
        # The device the session really runs on (a silent CPU fallback must show).
        self.device_label.setText(f"AI: {m.id} {m.version} on {analysis.session.describe()}")
        self._fill_point_box(analysis)
        if analysis.endoscopy is None:
            assert self.volume is not None
            self.reading.set_heatmap(heat)
        self._show_analysis(analysis)
        self.browser.refresh_local()

    def _fill_point_box(self, analysis: Any) -> None:
        """The model's operating points (default selected) and 'every candidate'."""
        self.point_box.blockSignals(True)
        self.point_box.clear()
        points = list(analysis.model.operating_points) or [analysis.point]
        for p in points:
            self.point_box.addItem(p.name, p)
            self.point_box.setItemData(
                self.point_box.count() - 1, p.describe(), Qt.ItemDataRole.ToolTipRole
            )
        self.point_box.addItem("every candidate", None)
        self.point_box.setCurrentIndex(points.index(analysis.point))
        self.point_box.blockSignals(False)
        self.point_box.show()

    def _point_chosen(self, index: int) -> None:
        if self.analysis is None or index < 0:
            return
        self.analysis = self.analysis.at(self.point_box.itemData(index))
        self._show_analysis(self.analysis)

    def _show_analysis(self, analysis: Any) -> None:
        """Findings at the analysis' operating point into the review, and say which."""
        if analysis.endoscopy is not None:
            self._show_frame_results(analysis)
        else:
            assert self.volume is not None
            self.review = self.session.review(
                analysis, self.findings, self.volume.series_instance_uid
            )
        summary = analysis.summary()
        self.ai_summary_label.setText(summary)
        self.ai_summary_label.setToolTip(summary)
        msg = summary
        if analysis.warnings:
            msg += " - " + "; ".join(analysis.warnings)
        self.status.showMessage(msg)

    # -- review ---------------------------------------------------------------------------------
    def _review_target(self) -> str | None:
        if self.review is None or self.nav.selected_finding is None:
            self.status.showMessage("Select a finding first (click its marker or the list)")
            return None
        return self.nav.selected_finding

    def _frame_decision(self, accept: bool) -> None:
        """Endoscopy: confirm or reject the selected frame, then go to the next frame."""
        frame = self.endoscopy.model.selected if self.endoscopy is not None else None
        if self.review is None or frame is None:
            self.status.showMessage("Analyse the frames first (F5)")
            return
        found = next(
            (
                f
                for f in self.findings
                if f.sop_instance_uid == frame.sop_instance_uid and f.frame == frame.frame
            ),
            None,
        )
        if found is not None:
            self.review.accept(found.finding_id) if accept else self.review.reject(found.finding_id)
        elif accept:
            # Not flagged at the operating point: the reader confirms on purpose, not by a
            # key pressed once too often.
            threshold = self.analysis.point.threshold if self.analysis is not None else 0.0
            risk = "no score" if frame.probability is None else f"risk {frame.probability:.0%}"
            answer = QMessageBox.question(
                self,
                "Confirm a frame the AI did not flag",
                f"Frame {frame.frame} was not flagged ({risk}, below the operating point "
                f"p >= {threshold:.2f}). Confirm it as a lesion?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                self.status.showMessage(f"Frame {frame.frame}: not confirmed")
                return
            self.review.add_frame(frame.sop_instance_uid, frame.frame, region=frame.region)
        else:
            self.status.showMessage("Nothing to reject: the AI did not flag this frame")
            return
        verdict = "confirmed" if accept else "rejected"
        self._mark_frames()
        # On to the next frame the AI flagged that is still pending, in the order shown.
        if self._next_flagged_pending():
            self.status.showMessage(f"Frame {frame.frame}: {verdict}")
        else:
            self.status.showMessage(f"Frame {frame.frame}: {verdict}; every flagged frame decided")

    def _next_flagged_pending(self) -> bool:
        model = self.endoscopy.model
        pending = {
            (f.sop_instance_uid, f.frame)
            for f in self.findings
            if f.status is ReviewStatus.PENDING and f.sop_instance_uid is not None
        }
        order = model.order
        start = model.position if model.position is not None else -1
        for step in range(1, len(order) + 1):
            pos = (start + step) % len(order)
            fr = model.frames[order[pos]]
            if (fr.sop_instance_uid, fr.frame) in pending:
                model.select_position(pos)
                return True
        return False

    def _mark_frames(self) -> None:
        """Decision marks and key-image stars on the endoscopy thumbnails."""
        if self.endoscopy is None or self.review is None:
            return
        keys = set(self.review_store.key_images(self.review.series_uid))
        marks: dict[tuple[str, int], tuple[str | None, bool]] = {}
        for f in self.findings:
            if f.sop_instance_uid is not None and f.status is not ReviewStatus.PENDING:
                marks[(f.sop_instance_uid, f.frame or 1)] = (f.status.value, False)
        for sop, fr in keys:
            status, _ = marks.get((sop, fr), (None, False))
            marks[(sop, fr)] = (status, True)
        self.endoscopy.set_decisions(marks)

    def toggle_key_image(self) -> None:
        frame = self.endoscopy.model.selected if self._showing_frames() else None
        if frame is None or self.review is None:
            self.status.showMessage("Key images: open and analyse an endoscopy study first")
            return
        chosen = self.review.toggle_key_image(frame.sop_instance_uid, frame.frame)
        self._mark_frames()
        self.status.showMessage(
            f"Frame {frame.frame}: key image {'chosen' if chosen else 'removed'}"
        )

    def accept_selected(self) -> None:
        if self._showing_frames():
            self._frame_decision(True)
            return
        fid = self._review_target()
        if fid is not None and self.review is not None:
            self.review.accept(fid)
            self.step_finding(1, pending_only=True)

    def reject_selected(self) -> None:
        if self._showing_frames():
            self._frame_decision(False)
            return
        fid = self._review_target()
        if fid is not None and self.review is not None:
            self.review.reject(fid)
            self.step_finding(1, pending_only=True)

    def undo_review(self) -> None:
        self._undo_redo(undo=True)

    def redo_review(self) -> None:
        self._undo_redo(undo=False)

    def _undo_redo(self, *, undo: bool) -> None:
        if self.review is None:
            return
        can = self.review.can_undo if undo else self.review.can_redo
        if not can:
            self.status.showMessage("Nothing to undo" if undo else "Nothing to redo")
            return
        f = self.review.undo() if undo else self.review.redo()
        verb = "Undone" if undo else "Redone"
        if f is None:
            self.status.showMessage(f"{verb}: the added finding is removed")
            return
        from core.findings import numbers

        n = numbers(list(self.findings)).get(f.finding_id, 0)
        self.nav.select(f.finding_id)
        self.status.showMessage(f"{verb}: finding #{n} is {f.status.value} again")

    def comment_selected(self) -> None:
        fid = self._review_target()
        if fid is None or self.review is None:
            return
        from PySide6.QtWidgets import QInputDialog

        current = self.findings.get(fid).comment
        text, ok = QInputDialog.getText(self, "Comment", f"Comment on finding {fid}:", text=current)
        if ok:
            self.review.comment(fid, text)

    def _showing_frames(self) -> bool:
        return self.endoscopy is not None and self.center.currentWidget() is self.endoscopy

    def step_finding(self, step: int, *, pending_only: bool = False) -> None:
        """Select the next/previous finding in list order (probability, highest first); in
        endoscopy review, the next/previous frame."""
        if self._showing_frames():
            model = self.endoscopy.model
            model.next() if step > 0 else model.previous()
            return
        ordered = sorted(self.findings, key=lambda f: -f.probability)
        if pending_only:
            candidates = [f for f in ordered if f.status is ReviewStatus.PENDING]
            if not candidates:
                self.status.showMessage("All findings reviewed")
                return
            ordered_ids = [f.finding_id for f in ordered]
            current = self.nav.selected_finding
            start = ordered_ids.index(current) if current in ordered_ids else -1
            after = [f for f in candidates if ordered_ids.index(f.finding_id) > start]
            target = (after or candidates)[0]
        else:
            if not ordered:
                return
            ids = [f.finding_id for f in ordered]
            current = self.nav.selected_finding
            n = ids.index(current) + step if current in ids else 0
            target = ordered[n % len(ordered)]
        self.nav.select(target.finding_id)
        if target.center_mm is not None:
            self.nav.move_to(target.center_mm)

    def _finding_edited(self, finding_id: str, center: Any, diameter: float) -> None:
        if self.review is None or self.volume is None:
            return
        k = round(float(self.volume.world_to_index(center)[0]))
        try:
            self.review.edit(finding_id, center_mm=center, diameter_mm=diameter, slice_index=k)
        except ValueError as exc:
            self.status.showMessage(str(exc))

    def _finding_drawn(self, center: Any, diameter: float) -> None:
        if self.volume is None:
            return
        if self.review is None:  # no AI run: the reader reviews from scratch
            self.review = ReviewSession(
                self.review_store,
                self.findings,
                self.volume.series_instance_uid,
                self.settings.user,
            )
            self.review.start([])
        k = round(float(self.volume.world_to_index(center)[0]))
        f = self.review.add(center, diameter, slice_index=k)
        self.nav.select(f.finding_id)
        self.reading.set_tool(Tool.NAVIGATE)

    def refresh_outbox_state(self) -> None:
        """Outbox state always visible: queued, failed, and the last error."""
        from dicom_net.outbox import OutboxState

        counts, last_error = Outbox(self.archive).counts()
        queued = counts.get(OutboxState.QUEUED, 0) + counts.get(OutboxState.SENDING, 0)
        failed = counts.get(OutboxState.FAILED, 0)
        delivered = counts.get(OutboxState.DELIVERED, 0)
        if not queued and not failed:
            self.outbox_label.setText(f"Outbox: {delivered} delivered" if delivered else "")
            self.outbox_label.setToolTip("")
            return
        text = f"Outbox: {queued} queued"
        if failed:
            text += f", {failed} failed"
        self.outbox_label.setText(text)
        self.outbox_label.setToolTip(last_error or "")

    def report_destination(self) -> str | None:
        """`[report] destination` in the settings, else the first configured node."""
        return self.session.report_destination()

    def sign_and_send(self) -> None:
        """Lung-RADS shown (changeable), SRs built from the stored review, queued, sent."""
        from PySide6.QtWidgets import QInputDialog

        from app.reporting import ReportError
        from core.reports.lung_rads import CATEGORIES, suggest_lung_rads

        if self.review is None:
            self.status.showMessage("Nothing to sign: open and review a study first")
            return
        dest = self.report_destination()
        if dest is None:
            self.status.showMessage("No destination: add [[nodes]] or [report] destination")
            return
        pending = len(self.review.pending())
        if pending:
            answer = QMessageBox.question(
                self,
                "Sign and send",
                f"{pending} finding(s) are still pending. Sign anyway (they are reported as "
                "not reviewed)?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,  # Enter does not sign an unfinished review
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        category: str | None = None
        if not self._showing_frames():
            suggestion = suggest_lung_rads(list(self.findings))
            categories = list(CATEGORIES)
            category, ok = QInputDialog.getItem(
                self,
                "Lung-RADS v2022",
                f"Suggested: {suggestion.category} ({suggestion.reason}).\n"
                "Category for the report:",
                categories,
                categories.index(suggestion.category),
                False,
            )
            if not ok:
                return
        series_uid = self.review.series_uid
        try:
            files, ids = self.session.sign(
                series_uid,
                lung_rads=category,
                operating_point=(
                    None
                    if self.analysis is None
                    else (self.analysis.point.name, self.analysis.point.threshold)
                ),
                destination=dest,
            )
        except (ReportError, ValueError, OSError) as exc:
            self.status.showMessage(f"Report not made: {exc}")
            return
        if self.outbox_worker is not None:
            self.outbox_worker.wake()
        self.last_report = files
        self.browser.refresh_local()
        self.status.showMessage(
            f"Signed{f': Lung-RADS {category}' if category else ''}; {len(ids)} objects queued "
            f"for {dest} "
            "(the outbox retries until delivered)"
        )

    def _show_frame_results(self, analysis: Any) -> None:
        from dataclasses import replace

        series_uid = analysis.series_instance_uid or getattr(self, "review_series_uid", "")
        self.review = self.session.review(analysis, self.findings, series_uid)
        by_key = {(a.ref.sop_instance_uid, a.ref.frame): a for a in analysis.endoscopy.frames}
        frames = []
        for f in self.review_frames:
            a = by_key.get((f.sop_instance_uid, f.frame))
            if a is None:
                frames.append(f)
                continue
            frames.append(
                replace(
                    f,
                    probability=a.lesion_probability,
                    informative=a.informative,
                    heatmap=a.heatmap,
                    region=a.region,
                )
            )
        self.review_frames = frames
        self._endoscopy_panel().set_frames(frames)
        position = {(f.sop_instance_uid, f.frame): n + 1 for n, f in enumerate(frames)}
        self.findings_panel.frame_number = lambda f: position.get((f.sop_instance_uid, f.frame))
        self.findings_panel.refresh()
        self._mark_frames()

    def _follow_finding_to_frame(self, finding_id: object) -> None:
        """A frame finding chosen in the list shows that frame (endoscopy)."""
        if not self._showing_frames() or not isinstance(finding_id, str):
            return
        try:
            f = self.findings.get(finding_id)
        except KeyError:
            return
        model = self.endoscopy.model
        for pos, idx in enumerate(model.order):
            fr = model.frames[idx]
            if (fr.sop_instance_uid, fr.frame) == (f.sop_instance_uid, f.frame):
                if model.position != pos:
                    model.select_position(pos)
                return

    def _analysis_failed(self, message: str) -> None:
        self._analysis_finished()
        self.analysis_error = message
        self.device_label.setText("AI: failed")
        self.status.showMessage(f"AI: {message}")

    def load_prior_results(self, study_uid: str, volume: Volume) -> None:
        """Results already in the study by other producers: read-only overlays, each naming
        its producer (read by the session, off the GUI thread)."""
        self.prior_producers = []
        if not self.session.prior_instances(study_uid):
            self.reading.set_priors([])
            return

        def done(priors: Any) -> None:
            self.reading.set_priors(
                [PriorMark(m.center_mm, m.diameter_mm, m.label) for m in priors.marks]
            )
            if priors.heat is not None and self.analysis is None:
                self.reading.set_heatmap(priors.heat)  # the prior map until the AI runs again
            self.prior_producers = priors.producers
            if priors.producers:
                self.status.showMessage("Prior results: " + " | ".join(priors.producers))

        run_task(lambda _p: self.session.priors(study_uid, volume), on_done=done)

    def _endoscopy_panel(self) -> Any:
        if self.endoscopy is None:
            from viewers.endoscopy_view import EndoscopyReviewPanel

            self.endoscopy = EndoscopyReviewPanel()
            self.endoscopy.set_ai_visibility(self.ai)
            self.center.addWidget(self.endoscopy)
        return self.endoscopy

    def show_volume(self, volume: Volume, *, keep_position: bool = False) -> None:
        """Show a volume; `keep_position` when it is the finished form of the one shown."""
        self.center.setCurrentWidget(self.reading)
        if keep_position and self.volume is not None:
            self.volume = volume
            self.reading.replace_volume(volume)
            return
        self.volume = volume
        self.reading.set_volume(volume)
        self.findings.replace_all([])
        self.review = None
        self.analysis = None
        self.reading.set_heatmap(None)
        self.window_level.apply_preset("lung")
        # Crosshair at the middle of the volume: every MPR pane starts on the same point.
        centre = volume.index_to_world([(n - 1) / 2 for n in volume.shape])
        self.nav.move_to((float(centre[0]), float(centre[1]), float(centre[2])))

    # -- screenshots ------------------------------------------------------------------------
    def screenshot(self, path: Path) -> None:
        """The window as the reader sees it, VTK pane included (grab() misses GL content)."""
        QApplication.processEvents()
        img = self.grab().toImage()
        view3d = self.reading.view3d
        if view3d is not None and view3d.isVisible() and hasattr(view3d, "render_to_array"):
            arr = np.ascontiguousarray(view3d.render_to_array())
            vtk_img = QImage(
                arr.data, arr.shape[1], arr.shape[0], 3 * arr.shape[1], QImage.Format.Format_RGB888
            ).copy()
            top_left = view3d.mapTo(self, view3d.rect().topLeft())
            p = QPainter(img)
            p.drawImage(top_left, vtk_img.scaled(view3d.size()))
            p.end()
        img.save(str(path))


def no_display_reason() -> str | None:
    """Why no window can open here (Linux without X11/Wayland), or None."""
    import os

    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no display to open the workstation on (DISPLAY and WAYLAND_DISPLAY are unset): run "
        "it in a desktop session, under `xvfb-run -a`, with QT_QPA_PLATFORM=offscreen and "
        "--screenshot, or use --no-window (demo) for the headless summary"
    )


def run_workstation(settings: Settings, args: argparse.Namespace) -> int:
    """`loupe` and `loupe open`: the window; with --screenshot, render once and exit."""
    problem = no_display_reason()
    if problem is not None:
        print(f"loupe: {problem}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    apply_dark_theme(app)
    archive = LocalArchive(settings.storage)
    win = Workstation(settings, archive)
    win.start_services()
    study_uid = getattr(args, "study_uid", None)
    screenshot = getattr(args, "screenshot", None)
    layout = getattr(args, "layout", None)
    if layout:
        win.set_layout(Layout(layout))
    win.show()
    if study_uid:
        win.open_study(study_uid)
    exit_code = 0
    if screenshot:
        deadline = time.monotonic() + 300

        def poll() -> None:
            nonlocal exit_code
            loaded = win.loaded_at is not None or bool(win.review_frames)
            ai_settled = (
                not win.analyze_on_open
                or win.analysis is not None
                or win.analysis_error is not None
            ) and win._ai_cancel is None
            ready = (loaded and ai_settled) or not study_uid
            if ready or time.monotonic() > deadline:
                if not ready:
                    print("loupe: the study did not load and analyse within 300 s", file=sys.stderr)
                    exit_code = 1
                QTimer.singleShot(300, finish)
                return
            QTimer.singleShot(100, poll)

        def finish() -> None:
            # Show the most likely finding: the picture should have the AI in it.
            top = max(win.findings, key=lambda f: f.probability, default=None)
            if top is not None and top.center_mm is not None:
                win.nav.select(top.finding_id)
                win.nav.move_to(top.center_mm)
            win.screenshot(Path(screenshot))
            win.close()
            app.quit()

        QTimer.singleShot(100, poll)
    app.exec()
    win.stop_services()
    return exit_code
