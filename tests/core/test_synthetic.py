"""Tests of the synthetic chest CT and endoscopy generators and their DICOM output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from peers import require_tool
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, VLEndoscopicImageStorage

from core.synthetic.chest_ct import (
    NODULE_KINDS,
    CtPhantom,
    make_chest_ct,
    write_ct_series,
)
from core.synthetic.endoscopy import make_endoscopy_frame, write_endoscopy_study

SOLID_KINDS = {"solid", "juxtapleural", "vessel-attached", "lobulated"}


def _small_ct(seed: int, *, slices: int = 40, nodule_count: int = 6) -> CtPhantom:
    """Small volume: 2.5 mm pixels so a whole chest fits in 128 x 128; nodules of 8-14 mm are
    still resolved at that pixel size."""
    return make_chest_ct(
        seed=seed,
        slices=slices,
        rows=128,
        cols=128,
        pixel_spacing_mm=2.5,
        slice_spacing_mm=2.5,
        nodule_count=nodule_count,
        min_nodule_mm=8.0,
        max_nodule_mm=14.0,
    )


@pytest.fixture(scope="module")
def phantom() -> CtPhantom:
    return _small_ct(11)


@pytest.fixture(scope="module")
def ct_dir(phantom: CtPhantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ct")
    write_ct_series(
        phantom,
        out,
        patient_id="SYN-CT-1",
        patient_name="Synthetic^Chest",
        accession_number="ACC1",
        uid_seed="test-ct",
    )
    return out


def _read_series(directory: Path) -> list[pydicom.Dataset]:
    dss = [pydicom.dcmread(p) for p in sorted(directory.glob("CT*.dcm"))]
    return sorted(dss, key=lambda d: float(d.ImagePositionPatient[2]))


def _voxel_of(dss: list[pydicom.Dataset], point_lps: tuple[float, float, float]) -> tuple[int, ...]:
    """(k, i, j) of an LPS point using only what is in the DICOM headers."""
    x, y, z = point_lps
    zs = np.array([float(d.ImagePositionPatient[2]) for d in dss])
    k = int(np.argmin(np.abs(zs - z)))
    ipp = [float(v) for v in dss[k].ImagePositionPatient]
    row_sp, col_sp = (float(v) for v in dss[k].PixelSpacing)
    # IOP [1,0,0,0,1,0]: columns advance along +x, rows along +y.
    return k, round((y - ipp[1]) / row_sp), round((x - ipp[0]) / col_sp)


def test_phantom_shape_and_types(phantom: CtPhantom) -> None:
    assert phantom.hu.shape == (40, 128, 128)
    assert phantom.hu.dtype == np.int16
    assert phantom.lung_mask.shape == phantom.hu.shape
    assert phantom.lung_mask.dtype == np.bool_
    assert phantom.spacing_mm == (2.5, 2.5, 2.5)
    assert phantom.hu.min() >= -1024 and phantom.hu.max() <= 3071
    assert 0.03 < phantom.lung_mask.mean() < 0.5
    assert {n.kind for n in phantom.nodules} == set(NODULE_KINDS)
    # Air outside the body, bone somewhere (spine, ribs).
    assert abs(float(np.median(phantom.hu[:, :3, :3]))) > 900
    assert phantom.hu.max() > 400


def test_nodules_in_lungs_and_disjoint(phantom: CtPhantom) -> None:
    x0, y0, z0 = phantom.origin_mm
    dz, dy, dx = phantom.spacing_mm
    for n in phantom.nodules:
        assert 4.0 <= n.diameter_mm <= 14.0  # may shrink (never below half) if hard to fit
        x, y, z = n.center_mm
        idx = (round((z - z0) / dz), round((y - y0) / dy), round((x - x0) / dx))
        assert phantom.lung_mask[idx], n
    centres = [np.array(n.center_mm) for n in phantom.nodules]
    for a in range(len(centres)):
        for b in range(a + 1, len(centres)):
            gap = np.linalg.norm(centres[a] - centres[b])
            assert gap > (phantom.nodules[a].diameter_mm + phantom.nodules[b].diameter_mm) / 2


def test_written_ct_reads_back(phantom: CtPhantom, ct_dir: Path) -> None:
    dss = _read_series(ct_dir)
    assert len(dss) == phantom.hu.shape[0]
    assert sorted(p.name for p in ct_dir.glob("*.dcm"))[0] == "CT000001.dcm"
    first = dss[0]
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert first.SOPClassUID == CTImageStorage
    assert first.Modality == "CT"
    assert first.Manufacturer == "Loupe synthetic"
    assert list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert first.PatientID == "SYN-CT-1" and first.AccessionNumber == "ACC1"
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    x0, y0, z0 = phantom.origin_mm
    for k, d in enumerate(dss):
        assert float(d.ImagePositionPatient[2]) == pytest.approx(z0 + k * phantom.spacing_mm[0])
        assert float(d.ImagePositionPatient[0]) == pytest.approx(x0)
        assert float(d.ImagePositionPatient[1]) == pytest.approx(y0)
    hu = np.stack(
        [
            d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept)
            for d in dss
        ]
    )
    np.testing.assert_array_equal(hu, phantom.hu)


def test_nodule_centre_hu_from_dicom_geometry(phantom: CtPhantom, ct_dir: Path) -> None:
    dss = _read_series(ct_dir)
    hu = np.stack([d.pixel_array.astype(np.int32) - 1024 for d in dss])
    parenchyma = float(np.median(hu[phantom.lung_mask]))
    assert -900 < parenchyma < -750
    for n in phantom.nodules:
        k, i, j = _voxel_of(dss, n.center_mm)
        v = int(hu[k, i, j])
        if n.kind in SOLID_KINDS:
            assert v > -250, (n, v)
        elif n.kind == "part-solid":
            assert v > -550, (n, v)  # solid core, partly volume-averaged at 2.5 mm
        else:
            assert -800 < v < -450, (n, v)  # ground glass
        assert v - parenchyma > 150, (n, v)


@pytest.mark.slow
def test_chest_ct_deterministic() -> None:
    a = _small_ct(5, slices=16, nodule_count=2)
    b = _small_ct(5, slices=16, nodule_count=2)
    c = _small_ct(6, slices=16, nodule_count=2)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.lung_mask, b.lung_mask)
    assert a.nodules == b.nodules
    assert not np.array_equal(a.hu, c.hu)


def test_uids_deterministic_with_seed(tmp_path: Path) -> None:
    ph = _small_ct(3, slices=4, nodule_count=0)
    w1 = write_ct_series(ph, tmp_path / "a", patient_id="P", patient_name="X^Y", uid_seed="s")
    w2 = write_ct_series(ph, tmp_path / "b", patient_id="P", patient_name="X^Y", uid_seed="s")
    w3 = write_ct_series(ph, tmp_path / "c", patient_id="P", patient_name="X^Y")
    assert w1.study_instance_uid == w2.study_instance_uid
    assert w1.sop_instance_uids == w2.sop_instance_uids
    assert w1.series_instance_uid != w3.series_instance_uid
    assert len(w1.paths) == 4 and all(p.exists() for p in w1.paths)
    w4 = write_ct_series(
        ph, tmp_path / "d", patient_id="P", patient_name="X^Y", study_instance_uid="1.2.3.4"
    )
    assert pydicom.dcmread(w4.paths[0]).StudyInstanceUID == "1.2.3.4"


def _dciodvfy(path: Path) -> None:
    """Assert dciodvfy (dicom3tools) reports no errors for path."""
    exe = require_tool("dciodvfy")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert not errors, output
    assert proc.returncode == 0, output


def test_dciodvfy_ct(ct_dir: Path) -> None:
    _dciodvfy(ct_dir / "CT000001.dcm")


def test_dciodvfy_endoscopy(tmp_path: Path) -> None:
    series, _ = write_endoscopy_study(
        tmp_path, seed=1, frames=2, patient_id="SYN-ES-1", patient_name="Synthetic^Endo"
    )
    _dciodvfy(series.paths[0])


def test_endoscopy_frame_truth() -> None:
    img, truth = make_endoscopy_frame(seed=4, rows=160, cols=200, lesion=True)
    assert img.dtype == np.uint8 and img.shape == (160, 200, 3)
    assert truth.lesion and truth.informative
    assert truth.lesion_box is not None
    r0, c0, r1, c1 = truth.lesion_box
    assert 0 <= r0 < r1 <= 160 and 0 <= c0 < c1 <= 200
    # Corners are outside the endoscope's round field: black.
    assert img[0, 0].max() < 20
    img2, truth2 = make_endoscopy_frame(seed=4, rows=160, cols=200, lesion=True)
    np.testing.assert_array_equal(img, img2)
    assert truth == truth2
    plain, t3 = make_endoscopy_frame(seed=4, rows=160, cols=200, lesion=False)
    assert t3.lesion_box is None and not t3.lesion
    assert not np.array_equal(plain, img)


def test_endoscopy_uninformative_frames_differ() -> None:
    good, _ = make_endoscopy_frame(seed=9, rows=128, cols=128, lesion=False)
    for s in range(8):
        img, truth = make_endoscopy_frame(
            seed=s, rows=128, cols=128, lesion=False, informative=False
        )
        assert not truth.informative and truth.lesion_box is None
        assert img.shape == good.shape


def test_write_endoscopy_study(tmp_path: Path) -> None:
    series, truths = write_endoscopy_study(
        tmp_path,
        seed=2,
        frames=6,
        patient_id="SYN-ES-2",
        patient_name="Synthetic^Endo",
        uid_seed="es",
    )
    assert len(series.paths) == len(truths) == 6
    assert [p.name for p in series.paths][:2] == ["ES000001.dcm", "ES000002.dcm"]
    assert any(t.lesion for t in truths) and any(not t.informative for t in truths)
    for path, truth in zip(series.paths, truths, strict=True):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == VLEndoscopicImageStorage
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.Modality == "ES"
        assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0
        assert ds.pixel_array.shape == (480, 480, 3)
        assert ds.StudyInstanceUID == series.study_instance_uid
        if truth.lesion:
            assert truth.lesion_box is not None and truth.informative
        else:
            assert truth.lesion_box is None
    again, truths2 = write_endoscopy_study(
        tmp_path / "again",
        seed=2,
        frames=6,
        patient_id="SYN-ES-2",
        patient_name="Synthetic^Endo",
        uid_seed="es",
    )
    assert truths2 == truths
    assert again.sop_instance_uids == series.sop_instance_uids
    assert pydicom.dcmread(again.paths[3]).PixelData == pydicom.dcmread(series.paths[3]).PixelData
