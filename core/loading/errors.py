"""Errors raised while loading images: each names the series or file and the reason."""

from __future__ import annotations

from pathlib import Path


class LoadError(Exception):
    """Nothing usable could be loaded (the message names the series or file and why)."""


class LoadCancelled(LoadError):
    """The caller cancelled the load."""


class FileProblem(LoadError):
    """One file cannot be used; the rest of the series may still load."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
