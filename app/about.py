"""What the About box says: versions of Loupe and what it runs on, the AI device in use, and
each installed model with its card. Qt-free text (the window shows it; `loupe --version`
and support scripts can print it)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from app.version import __version__

PACKAGES = (
    "PySide6",
    "pydicom",
    "pynetdicom",
    "highdicom",
    "numpy",
    "SimpleITK",
    "vtk",
    "onnxruntime",
    "onnxruntime-gpu",
)


def versions() -> list[tuple[str, str]]:
    out = [("Loupe", __version__), ("Python", platform.python_version())]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return out


def device_line(analysis: Any | None) -> str:
    """The device the last analysis really ran on, else the providers ONNX Runtime offers."""
    if analysis is not None:
        return f"{analysis.model.id} {analysis.model.version} on {analysis.session.describe()}"
    try:
        import onnxruntime as ort

        return "available: " + ", ".join(ort.get_available_providers())
    except Exception as exc:  # a broken ONNX Runtime install must not stop the About box
        return f"ONNX Runtime unavailable ({exc})"


def models() -> list[tuple[str, str]]:
    """(title, model card text) of each installed model; broken ones say why."""
    from inference.registry import ModelRegistry

    out = []
    for e in ModelRegistry().entries():
        if e.manifest is None:
            out.append((e.directory.name, f"not usable: {e.error}"))
            continue
        m = e.manifest
        card = e.directory / "MODEL_CARD.md"
        text = card.read_text(encoding="utf-8") if card.exists() else "(no model card)"
        out.append((f"{m.id} {m.version}", text))
    return out


def about_text(analysis: Any | None = None) -> str:
    lines = ["Loupe AI reading workstation. Not for clinical use.", ""]
    lines += [f"{name} {version}" for name, version in versions()]
    lines += ["", f"Platform: {platform.platform()} ({sys.executable})"]
    lines += [f"AI device: {device_line(analysis)}", "", "Models:"]
    lines += [f"  {title}" for title, _ in models()]
    return "\n".join(lines)
