"""`loupe analyze`, `loupe evaluate` and `loupe models` through the real command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.synthetic.chest_ct import make_chest_ct, write_ct_series
from core.synthetic.endoscopy import write_endoscopy_study

pytestmark = pytest.mark.slow  # model runs on generated series: seconds to a minute each


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    out = tmp_path_factory.mktemp("ct")
    ph = make_chest_ct(
        seed=990011,
        slices=100,
        rows=224,
        cols=224,
        pixel_spacing_mm=1.6,
        slice_spacing_mm=2.5,
        nodule_count=3,
        min_nodule_mm=8.0,
        max_nodule_mm=16.0,
    )
    written = write_ct_series(ph, out, patient_id="AI-1", patient_name="Ai^Test", uid_seed="ai")
    return out, ph, written


def test_analyze_json_on_a_written_series(loupe, ct_dir) -> None:  # type: ignore[no-untyped-def]
    loupe.write_config()
    folder, ph, written = ct_dir
    r = loupe.run("analyze", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    assert "on CPU" in r.stderr  # the device used, visible
    doc = json.loads(r.stdout)
    point = doc["operating_point"]
    assert point["name"] == "balanced" and 0.0 < point["threshold"] < 1.0
    (series,) = doc["series"]
    assert series["operating_point"] == point and not series["max_findings_reached"]
    rows = doc["findings"]
    assert rows and len(rows) == series["findings"] <= series["candidates"]
    for row in rows:
        assert row["probability"] >= point["threshold"]
        assert row["operating_point"] == "balanced"
        for key in (
            "finding_id",
            "model",
            "model_version",
            "series_uid",
            "x",
            "y",
            "z",
            "diameter_mm",
            "probability",
            "slice_index",
        ):
            assert key in row
        assert row["series_uid"] == written.series_instance_uid
        assert row["model"] == "lung-nodule-ref"
    for nd in ph.nodules:
        d = [np.linalg.norm(np.subtract([r["x"], r["y"], r["z"]], nd.center_mm)) for r in rows]
        assert min(d) <= nd.diameter_mm / 2, (nd, rows)
    # Every candidate, for FROC: at least the findings, down to the candidate threshold.
    r = loupe.run("analyze", str(folder), "--json", "--all-candidates")
    assert r.returncode == 0, r.stderr
    every = json.loads(r.stdout)
    assert every["operating_point"]["name"] == "all candidates"
    assert every["operating_point"]["threshold"] < point["threshold"]
    assert len(every["findings"]) == series["candidates"] >= len(rows)
    assert {f["finding_id"] for f in rows} <= {f["finding_id"] for f in every["findings"]}


def test_analyze_study_from_archive_and_plain_output(loupe, ct_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loupe.write_config()
    folder, _, written = ct_dir
    es_dir = tmp_path / "es"
    es, _ = write_endoscopy_study(
        es_dir,
        seed=3,
        frames=8,
        patient_id="AI-1",
        patient_name="Ai^Test",
        study_instance_uid=written.study_instance_uid,
    )
    assert loupe.run("import", str(folder), str(es_dir)).returncode == 0
    r = loupe.run("analyze", "--study-uid", written.study_instance_uid, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    models = {s["model"] for s in doc["series"]}
    assert models == {"lung-nodule-ref", "endoscopy-lesion-ref"}
    frame_rows = [row for row in doc["findings"] if row["model"] == "endoscopy-lesion-ref"]
    for row in frame_rows:
        assert row["sop_instance_uid"] in es.sop_instance_uids and row["frame"] == 1
    # One entry per frame, every frame scored, with stage 1's verdict.
    frames = doc["frames"]
    assert sorted(f["sop_instance_uid"] for f in frames) == sorted(es.sop_instance_uids)
    for f in frames:
        assert 0.0 <= f["lesion_probability"] <= 1.0
        assert isinstance(f["informative"], bool) and 0.0 <= f["informative_probability"] <= 1.0
    r = loupe.run("analyze", str(folder))
    assert r.returncode == 0 and "lung-nodule-ref" in r.stdout and " on CPU" in r.stdout
    assert "at 'balanced' (p >= " in r.stdout


def test_analyze_refuses_clearly(loupe, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loupe.write_config()
    es_dir = tmp_path / "es"
    write_endoscopy_study(es_dir, seed=4, frames=3, patient_id="X", patient_name="X^X")
    r = loupe.run("analyze", str(es_dir), "--model", "lung-nodule-ref")
    assert r.returncode == 2
    assert "applies to CT series; this series is ES" in r.stderr
    assert "Traceback" not in r.stderr
    r = loupe.run("analyze", "--study-uid", "1.2.3.4")
    assert r.returncode == 2 and "not in the local archive" in r.stderr
    r = loupe.run("analyze", str(es_dir), "--model", "no-such-model")
    assert r.returncode == 1 and "no model 'no-such-model'" in r.stderr


def test_models_list_and_verify(loupe, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    loupe.write_config()
    r = loupe.run("models", "list", "--json")
    assert r.returncode == 0
    ids = {m["id"] for m in json.loads(r.stdout)}
    assert ids == {"lung-nodule-ref", "endoscopy-lesion-ref"}
    r = loupe.run("models", "verify")
    assert r.returncode == 0 and "lung-nodule-ref: ok" in r.stdout
    # An altered model file is refused by verify and by analyze.
    models = tmp_path / "models"
    shutil.copytree(Path(__file__).resolve().parents[2] / "resources" / "models", models)
    with open(models / "endoscopy-lesion-ref" / "model.onnx", "ab") as f:
        f.write(b"x")
    monkeypatch.setenv("LOUPE_MODELS_DIR", str(models))
    r = loupe.run("models", "verify")
    assert r.returncode == 1
    assert "endoscopy-lesion-ref" in r.stdout and "sha256" in r.stdout
    es_dir = tmp_path / "es"
    write_endoscopy_study(es_dir, seed=4, frames=2, patient_id="X", patient_name="X^X")
    r = loupe.run("analyze", str(es_dir))
    assert r.returncode == 1 and "refused" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_cli(loupe, ct_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    loupe.write_config()
    folder, ph, written = ct_dir
    csv = tmp_path / "ann.csv"
    csv.write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        + "".join(
            f"{written.series_instance_uid},{n.center_mm[0]},{n.center_mm[1]},"
            f"{n.center_mm[2]},{n.diameter_mm}\n"
            for n in ph.nodules
        )
    )
    r = loupe.run("evaluate", str(csv), str(folder), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["scans"] == 1 and res["nodules"] == 3
    assert res["sensitivity"]["8.0"] >= 2 / 3
    at = res["at_default_operating_point"]
    assert at["operating_point"] == "balanced" and at["sensitivity"] >= 2 / 3
    # A site measures its own operating points; the file is valid manifest content.
    out = tmp_path / "points.json"
    r = loupe.run("evaluate", str(csv), str(folder), "--operating-points", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    from inference.manifest import Task, _operating_points

    points = _operating_points(doc["operating_points"], Task.DETECTION_3D_HEATMAP)
    assert [p.name for p in points] == ["specific", "balanced", "sensitive"]
    assert [p.default for p in points] == [False, True, False]
    thresholds = [p.threshold for p in points]
    assert thresholds == sorted(thresholds, reverse=True)  # more FPs allowed, lower threshold
    assert all(
        p.false_positives_per_scan <= t for p, t in zip(points, (0.25, 1.0, 4.0), strict=True)
    )
