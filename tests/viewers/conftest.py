"""GUI tests run in a real X server (Xvfb) with Qt's xcb platform, VTK included."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import IN_CI

_held: list[int] = []


def _hold_connection(display: str) -> None:
    """Keep one X connection open for the whole run: between tests whose windows come and
    go (and child processes that connect and leave), Xvfb never sees zero clients."""
    lib = ctypes.util.find_library("X11")
    if lib is None:
        pytest.fail("libX11 not found: bash .ci/setup installs the X libraries")
    x11 = ctypes.CDLL(lib)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    for _ in range(50):
        handle = x11.XOpenDisplay(display.encode())
        if handle:
            _held.append(handle)
            return
        time.sleep(0.1)
    pytest.fail(f"cannot connect to Xvfb on {display}")


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
        # -terminate: Xvfb exits by itself when its last client (this process) is gone, so
        # it is never killed under a live Qt or VTK connection (that aborts with an XIO error).
        proc = subprocess.Popen(
            [xvfb, f":{display}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp",
             "-terminate"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(50):
            if Path(f"/tmp/.X11-unix/X{display}").exists():
                os.environ["DISPLAY"] = f":{display}"
                _hold_connection(f":{display}")
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
    pytest.fail("could not start Xvfb on any display :91-:139")


@pytest.fixture(scope="session", autouse=True)
def x_display() -> Iterator[None]:
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    _start_xvfb()
    yield  # Xvfb ends by itself after this process exits (-terminate)
