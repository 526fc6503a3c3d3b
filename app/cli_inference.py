"""Command-line commands of the AI engine (`analyze`, `evaluate`, `models`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

AddCommand = Callable[[str, Callable[..., int], str], argparse.ArgumentParser]


def register_inference_commands(add: AddCommand) -> None:
    """Add the engine's subcommands to the `loupe` parser (none until the engine lands)."""
