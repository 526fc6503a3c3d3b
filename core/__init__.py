"""Loupe core: Qt-free domain (volumes, frames, findings, review, reports)."""
