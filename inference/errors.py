"""Errors of the AI engine. Each message names what is wrong and why."""

from __future__ import annotations


class ModelError(Exception):
    """A model cannot be used: broken manifest, missing or altered file, bad graph."""


class ManifestError(ModelError, ValueError):
    """A manifest field is missing or invalid; the message names the field."""


class InputNotApplicable(ValueError):
    """The series is not one the model applies to (modality, slices, spacing, ...)."""


class Cancelled(Exception):
    """The run was cancelled through its cancel event."""
