"""Real DICOM peers for tests: Orthanc as a child process, DCMTK tools. No mock PACS."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Path of a peer program; under CI a missing peer fails the test instead of skipping."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found: install it (bash .ci/setup installs orthanc, dcmtk, dicom3tools)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peer_env() -> dict[str, str]:
    # DCMTK 3.6.7 (Orthanc included) leaves Nagle on unless told: a receiver stalls
    # about 45 ms per image.
    return {**os.environ, "TCP_NODELAY": "1"}


@dataclass
class Orthanc:
    """One Orthanc server on free loopback ports with its own storage and config."""

    workdir: Path
    aet: str = "ORTHANC"
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    extra_config: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "Name": "loupe-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "MaximumPduLength": 131072,
            "OverwriteInstances": True,
            "SaveJobs": False,
            "StorageCompression": False,
            "DicomScpTimeout": 30,
            **self.extra_config,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        binary = require_tool("Orthanc")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        with open(self.workdir / "orthanc.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=peer_env()
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.proc.returncode}; see {self.workdir}/orthanc.log"
                )
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer within 30 s; see {self.workdir}/orthanc.log")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=30) as rsp:
            data = rsp.read()
        if rsp.headers.get_content_type() == "application/json":
            return json.loads(data)
        return data

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def upload(self, paths: list[Path]) -> list[str]:
        ids = []
        for p in paths:
            ids.append(self.request("POST", "/instances", p.read_bytes())["ID"])
        return ids

    def node_toml(
        self, name: str = "pacs", retrieve: str = "move", move_streams: int | None = None
    ) -> str:
        streams = f"move_streams = {move_streams}\n" if move_streams is not None else ""
        return (
            f'[[nodes]]\nname = "{name}"\nae_title = "{self.aet}"\nhost = "127.0.0.1"\n'
            f'port = {self.dicom_port}\nretrieve = "{retrieve}"\n{streams}'
        )


@dataclass(frozen=True)
class CtSeries:
    """A CT series written to disk for tests."""

    study_instance_uid: str
    series_instance_uid: str
    paths: tuple[Path, ...]
