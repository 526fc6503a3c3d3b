"""Shared fixtures: real peers (Orthanc, DCMTK), heavy data generated once per run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from peers import CtSeries, Orthanc, free_port, peer_env, require_tool

ROOT = Path(__file__).resolve().parents[1]
LOUPE = [sys.executable, "-m", "app.cli"]


@pytest.fixture(scope="session")
def big_ct(tmp_path_factory: pytest.TempPathFactory) -> CtSeries:
    """A 200-slice 512x512 synthetic chest CT, written once per test run."""
    from core.synthetic.chest_ct import make_chest_ct, write_ct_series

    out = tmp_path_factory.mktemp("big_ct")
    phantom = make_chest_ct(seed=1234, slices=200, rows=512, cols=512, nodule_count=3)
    written = write_ct_series(
        phantom,
        out,
        patient_id="LOUPE-T1",
        patient_name="Test^Bigct",
        uid_seed="big-ct",
        study_date="20260315",
        study_description="CT CHEST LOW DOSE",
    )
    return CtSeries(written.study_instance_uid, written.series_instance_uid, written.paths)


@pytest.fixture(scope="session")
def small_ct(tmp_path_factory: pytest.TempPathFactory) -> CtSeries:
    from core.synthetic.chest_ct import make_chest_ct, write_ct_series

    out = tmp_path_factory.mktemp("small_ct")
    phantom = make_chest_ct(
        seed=99,
        slices=24,
        rows=128,
        cols=128,
        pixel_spacing_mm=2.5,
        slice_spacing_mm=5.0,
        nodule_count=1,
    )
    written = write_ct_series(
        phantom,
        out,
        patient_id="LOUPE-T2",
        patient_name="Test^Smallct",
        uid_seed="small-ct",
        study_date="20250102",
        study_description="CT THORAX",
    )
    return CtSeries(written.study_instance_uid, written.series_instance_uid, written.paths)


@pytest.fixture(scope="session")
def loupe_port() -> int:
    """The port our storage SCP uses in every test (Orthanc knows it as a C-MOVE target)."""
    return free_port()


@pytest.fixture(scope="session")
def pacs(
    tmp_path_factory: pytest.TempPathFactory,
    loupe_port: int,
    big_ct: CtSeries,
    small_ct: CtSeries,
) -> Iterator[Orthanc]:
    """The session's PACS: Orthanc knowing LOUPE as a C-MOVE destination, with two studies."""
    orthanc = Orthanc(
        tmp_path_factory.mktemp("orthanc"),
        modalities={"loupe": ("LOUPE", "127.0.0.1", loupe_port)},
    ).start()
    orthanc.upload(list(big_ct.paths) + list(small_ct.paths))
    yield orthanc
    orthanc.stop()


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Orthanc] = []

    def make(name: str = "orthanc", **kw: object) -> Orthanc:
        o = Orthanc(tmp_path / name, **kw)  # type: ignore[arg-type]
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


@dataclass
class LoupeEnv:
    """A Loupe installation for one test: its own settings file and archive."""

    home: Path
    port: int

    @property
    def config(self) -> Path:
        return self.home / "loupe.toml"

    @property
    def storage(self) -> Path:
        return self.home / "archive"

    def write_config(
        self, *nodes_toml: str, allowed_callers: list[str] | None = None, ae_title: str = "LOUPE"
    ) -> Path:
        lines = [
            "[local]",
            f'ae_title = "{ae_title}"',
            f"port = {self.port}",
            'bind = "127.0.0.1"',
            f'storage = "{self.storage}"',
        ]
        if allowed_callers is not None:
            lines.append("allowed_callers = [" + ", ".join(f'"{a}"' for a in allowed_callers) + "]")
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n\n" + "\n".join(nodes_toml))
        return self.config

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the real `loupe` command line in a child process."""
        env = {**peer_env(), "LOUPE_HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [*LOUPE, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )


@pytest.fixture
def loupe(tmp_path: Path, loupe_port: int) -> LoupeEnv:
    return LoupeEnv(home=tmp_path / "loupe", port=loupe_port)


@pytest.fixture(scope="session")
def dcmtk() -> dict[str, str]:
    tools = ["echoscu", "findscu", "movescu", "getscu", "storescu", "storescp", "dcmsend"]
    return {t: require_tool(t) for t in tools}


def pytest_report_header(config: pytest.Config) -> str:
    return f"CI={os.environ.get('CI', '')}; peers: Orthanc + DCMTK on loopback"
