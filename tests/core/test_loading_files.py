"""Every file shipped in pydicom's test data, loaded as a one-file series: a volume or a clear
LoadError naming the file, never a crash or a hang. Only files already on disk are used."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from core.loading import LoadError, load_series

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
ALL_FILES = sorted(p for p in TEST_FILES.rglob("*") if p.is_file())


def test_bundled_files_are_present() -> None:
    assert len(ALL_FILES) > 80


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(TEST_FILES)))
def test_bundled_file_loads_or_names_itself(path: Path) -> None:
    start = time.perf_counter()
    try:
        vol = load_series([path])
    except LoadError as exc:
        assert str(path) in str(exc)
        assert "no usable image (" in str(exc)
    else:
        assert vol.voxels.ndim == 3 and vol.voxels.shape[0] >= 1
        assert vol.voxels.dtype in (np.int16, np.float32)
        assert np.isfinite(vol.affine).all()
        assert all(isinstance(w, str) and w for w in vol.warnings)
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "pixel data is truncated"),
        ("rtplan.dcm", "no pixel data (RT Plan Storage)"),
        ("SC_rgb_jpeg.dcm", "colour image (RGB"),
        ("JPEG2000.dcm", "ImagePositionPatient is missing"),
        ("README.txt", "not a DICOM image"),
    ],
)
def test_unusable_files_say_why(name: str, reason: str) -> None:
    path = TEST_FILES / name
    with pytest.raises(LoadError) as err:
        load_series([path])
    assert f"{path}: {reason}" in str(err.value)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ],
)
def test_encodings_of_one_image_agree(name: str) -> None:
    ref = load_series([TEST_FILES / "MR_small.dcm"])
    vol = load_series([TEST_FILES / name])
    assert np.array_equal(vol.voxels, ref.voxels)
    assert np.array_equal(vol.affine, ref.affine)


def test_multi_frame_dose_grid_uses_frame_offsets() -> None:
    ds = pydicom.dcmread(TEST_FILES / "rtdose.dcm")
    vol = load_series([TEST_FILES / "rtdose.dcm"])
    assert vol.shape[0] == int(ds.NumberOfFrames)
    assert vol.voxels.dtype == np.float32
    expected = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    assert np.allclose(vol.voxels, expected, rtol=1e-6)
    assert vol.frame_numbers == tuple(range(1, vol.shape[0] + 1))
