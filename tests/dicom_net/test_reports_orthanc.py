"""Every report object Loupe builds is accepted by a real PACS (Orthanc) over C-STORE and
comes back unchanged over its REST API."""

from __future__ import annotations

import io
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from peers import CtSeries, peer_env, require_tool

from core.findings import Finding, ReviewStatus
from core.reports.ai_sr import build_ai_sr
from core.reports.ct_grid import CtGrid
from core.reports.kos import build_kos
from core.reports.pmap import build_probability_map
from core.reports.read import read_findings
from core.reports.review_sr import build_review_sr
from core.reports.seg import build_nodule_seg

pytestmark = pytest.mark.network


def write_objects(small_ct: CtSeries, out: Path) -> dict[str, Path]:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in small_ct.paths]
    grid = CtGrid.from_headers(headers)

    def nodule(n: int, k: int, row: int, col: int, d: float) -> Finding:
        x, y, z = grid.slice_points(k)[row, col]
        return Finding(
            finding_id=f"lung-nodule-ref-{n}",
            model_id="lung-nodule-ref",
            model_version="1.0.0",
            series_instance_uid=small_ct.series_instance_uid,
            probability=0.8,
            center_mm=(float(x), float(y), float(z)),
            diameter_mm=d,
            attributes={"type": "solid"},
        )

    ai = [nodule(1, 6, 40, 50, 9.0), nodule(2, 15, 70, 80, 5.0)]
    reviewed = [
        replace(ai[0], status=ReviewStatus.ACCEPTED),
        replace(ai[1], status=ReviewStatus.REJECTED, comment="scar"),
    ]
    ai_sr = build_ai_sr(
        ai,
        source_images=headers,
        model_id="lung-nodule-ref",
        model_version="1.0.0",
        model_name="Loupe reference lung nodule detector",
    )
    review = build_review_sr(
        reviewed,
        ai_sr=ai_sr,
        source_images=headers,
        reader_name="House^Gregory",
        lung_rads="4A",
    )
    heat = np.zeros(grid.shape, dtype=np.float32)
    heat[6, 38:43, 48:53] = 0.75
    objects = {
        "ai_sr": ai_sr,
        "review_sr": review,
        "kos": build_kos(reviewed, source_images=headers, reader_name="House^Gregory"),
        "seg": build_nodule_seg(reviewed, source_images=headers),
        "pmap": build_probability_map(
            heat, source_images=headers, model_id="lung-nodule-ref", model_version="1.0.0"
        ),
    }
    paths = {}
    for name, ds in objects.items():
        paths[name] = out / f"{name}.dcm"
        ds.save_as(paths[name])
    return paths


def test_orthanc_stores_and_returns_every_report_object(
    orthanc_factory, small_ct: CtSeries, tmp_path: Path
) -> None:
    paths = write_objects(small_ct, tmp_path)
    sent = {name: pydicom.dcmread(p) for name, p in paths.items()}
    pacs = orthanc_factory().start()
    r = subprocess.run(
        [require_tool("dcmsend"), "127.0.0.1", str(pacs.dicom_port), *map(str, paths.values())],
        capture_output=True,
        text=True,
        timeout=60,
        env=peer_env(),  # TCP_NODELAY=1
    )
    assert r.returncode == 0, r.stderr

    ids = pacs.get("/instances")
    assert len(ids) == len(paths)
    stored = {}
    for orthanc_id in ids:
        ds = pydicom.dcmread(io.BytesIO(pacs.request("GET", f"/instances/{orthanc_id}/file")))
        stored[str(ds.SOPInstanceUID)] = ds
    for name, ds in sent.items():
        back = stored[str(ds.SOPInstanceUID)]
        assert back.SOPClassUID == ds.SOPClassUID, name
        assert back.StudyInstanceUID == small_ct.study_instance_uid, name
        assert back == ds, name  # every attribute, pixel data included, as sent

    # What a viewer fetching the reviewer's SR from the PACS would read.
    producer, findings = read_findings(stored[str(sent["review_sr"].SOPInstanceUID)])
    assert producer.predecessors == (sent["ai_sr"].SOPInstanceUID,)
    assert [f.status for f in findings] == [ReviewStatus.ACCEPTED, ReviewStatus.REJECTED]
    assert producer.lung_rads == "4A"
