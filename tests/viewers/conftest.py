"""GUI tests run in a real X server (Xvfb) with Qt's xcb platform, VTK included."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import IN_CI


def _start_xvfb() -> subprocess.Popen[bytes] | None:
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        msg = "Xvfb not found: bash .ci/setup installs xvfb"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    for display in range(91, 140):
        if Path(f"/tmp/.X11-unix/X{display}").exists() or Path(f"/tmp/.X{display}-lock").exists():
            continue
        proc = subprocess.Popen(
            [xvfb, f":{display}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(50):
            if Path(f"/tmp/.X11-unix/X{display}").exists():
                os.environ["DISPLAY"] = f":{display}"
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
    pytest.fail("could not start Xvfb on any display :91-:139")


@pytest.fixture(scope="session", autouse=True)
def x_display() -> Iterator[None]:
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    proc = _start_xvfb()
    yield
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)
