"""The dark theme readers are used to (Horos, RadiAnt) and the icon set."""

from __future__ import annotations

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#1b1c1e"
PANEL = "#242629"
TEXT = "#d8dadc"
ACCENT = "#3d8fd6"  # selection
PANE_BACKGROUND = "#121212"  # behind images and the colour bar
MUTED = "#8a8a8a"  # secondary text
OVERLAY_TEXT = QColor(230, 230, 210)
CROSSHAIR = QColor(70, 200, 255, 170)


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    for role, color in (
        (QPalette.ColorRole.Window, PANEL),
        (QPalette.ColorRole.WindowText, TEXT),
        (QPalette.ColorRole.Base, BACKGROUND),
        (QPalette.ColorRole.AlternateBase, PANEL),
        (QPalette.ColorRole.Text, TEXT),
        (QPalette.ColorRole.Button, PANEL),
        (QPalette.ColorRole.ButtonText, TEXT),
        (QPalette.ColorRole.Highlight, ACCENT),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
        (QPalette.ColorRole.ToolTipBase, PANEL),
        (QPalette.ColorRole.ToolTipText, TEXT),
    ):
        pal.setColor(role, QColor(color))
    app.setPalette(pal)
    app.setStyleSheet(
        f"QToolBar {{ background: {PANEL}; border: 0; spacing: 2px; }}"
        f"QDockWidget::title {{ background: {BACKGROUND}; padding: 4px; }}"
        f"QHeaderView::section {{ background: {PANEL}; color: {TEXT}; border: 0; padding: 3px; }}"
        "QTableView, QTreeView, QListWidget { gridline-color: #333; }"
        "QStatusBar { color: #a0a4a8; }"
    )


def icon(name: str, color: str = TEXT) -> QIcon:
    import qtawesome as qta

    result: QIcon = qta.icon(name, color=color)
    return result
