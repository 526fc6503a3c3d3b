"""CT series loading: geometry on real and synthetic series, HU, irregular series, bad files."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from core.loading import LoadCancelled, LoadError, LoadProgress, SeriesLoader, load_series
from core.loading.pixels import rescale_into
from core.synthetic.chest_ct import make_chest_ct, write_ct_series
from core.volume import Volume

SPHERE_HU = 400
BACKGROUND_HU = -1000
Vec = Sequence[float]

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
CT5N = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"


# ------------------------------------------------------------------------------------------
# Writing small synthetic series with a sphere at a known world position


def _slice_hu(
    position: Vec,
    row_dir: Vec,
    col_dir: Vec,
    spacing: tuple[float, float],
    rows: int,
    cols: int,
    spheres: Sequence[tuple[Vec, float]],
) -> npt.NDArray[np.int32]:
    """HU of one slice: sphere voxels whose centre lies within the radius, else background."""
    j, i = np.mgrid[0:rows, 0:cols].astype(np.float64)
    world = (
        np.asarray(position)[None, None, :]
        + i[..., None] * spacing[1] * np.asarray(row_dir)
        + j[..., None] * spacing[0] * np.asarray(col_dir)
    )
    hu = np.full((rows, cols), BACKGROUND_HU, dtype=np.int32)
    for centre, radius in spheres:
        inside = np.linalg.norm(world - np.asarray(centre), axis=-1) <= radius
        hu[inside] = SPHERE_HU
    return hu


def _ct_dataset(
    *,
    position: Vec,
    row_dir: Vec,
    col_dir: Vec,
    spacing: tuple[float, float],
    hu: npt.NDArray[np.int32],
    series_uid: str,
    number: int,
    slope: float = 1.0,
    intercept: float = -1024.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    acquisition: int = 1,
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.3.4.5"
    ds.Modality = "CT"
    ds.InstanceNumber = number
    ds.AcquisitionNumber = acquisition
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[1]:g}"]
    ds.SliceThickness = "1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    stored = np.round((hu - intercept) / slope).astype("<i2")
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _save(ds: Dataset, path: Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if syntax in (RLELossless, JPEG2000Lossless, JPEGLSLossless):
        ds.compress(syntax)
    elif syntax == ExplicitVRBigEndian:
        arr = np.frombuffer(ds.PixelData, dtype="<i2")
        ds.PixelData = arr.astype(">i2").tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    out: Path,
    positions: Sequence[Vec],
    *,
    row_dir: Vec = (1.0, 0.0, 0.0),
    col_dir: Vec = (0.0, 1.0, 0.0),
    spacing: tuple[float, float] = (1.0, 1.0),
    rows: int = 24,
    cols: int = 24,
    spheres: Sequence[tuple[Vec, float]] = (),
    syntax: str = ExplicitVRLittleEndian,
    slope: float = 1.0,
    intercept: float = -1024.0,
    shuffle_seed: int = 0,
) -> list[Path]:
    """One file per position, file names in random order (the loader must sort)."""
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    names = list(range(len(positions)))
    random.Random(shuffle_seed).shuffle(names)
    paths = []
    for n, pos in enumerate(positions):
        hu = _slice_hu(pos, row_dir, col_dir, spacing, rows, cols, spheres)
        ds = _ct_dataset(
            position=pos,
            row_dir=row_dir,
            col_dir=col_dir,
            spacing=spacing,
            hu=hu,
            series_uid=series_uid,
            number=n + 1,
            slope=slope,
            intercept=intercept,
        )
        paths.append(_save(ds, out / f"IM{names[n]:04d}", syntax))
    random.Random(shuffle_seed + 1).shuffle(paths)
    return paths


def assert_sphere_at(vol: Volume, centre: Vec, *, tol: float = 0.35) -> None:
    """The sphere's voxels have their centroid where the world centre maps to, and the voxel
    nearest that index is inside the sphere."""
    expected = vol.world_to_index(centre)
    kji = np.argwhere(vol.voxels == SPHERE_HU)
    assert len(kji) > 10, "sphere not found in the volume"
    centroid = kji.mean(axis=0)
    assert np.allclose(centroid, expected, atol=tol), (centroid, expected)
    k, j, i = (round(float(v)) for v in expected)
    assert vol.voxels[k, j, i] == SPHERE_HU


def _axial(n: int, step: float = 2.0, z0: float = -20.0) -> list[tuple[float, float, float]]:
    return [(-11.5, -11.5, z0 + k * step) for k in range(n)]


# ------------------------------------------------------------------------------------------
# Real series shipped with pydicom


def test_ct_small_geometry_and_hu() -> None:
    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    ds = pydicom.dcmread(path)
    vol = load_series([path])
    assert vol.shape == (1, 128, 128)
    assert vol.voxels.dtype == np.int16
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(vol.voxels[0], hu)
    assert np.allclose(vol.affine[:3, 3], [float(v) for v in ds.ImagePositionPatient])
    # Column i runs along the row cosine scaled by the column spacing (PixelSpacing[1]).
    row = np.array([float(v) for v in ds.ImageOrientationPatient[:3]])
    assert np.allclose(vol.affine[:3, 2], row * float(ds.PixelSpacing[1]))
    assert vol.sop_instance_uids == (ds.SOPInstanceUID,)
    assert vol.series_instance_uid == ds.SeriesInstanceUID
    assert vol.frame_of_reference_uid == ds.FrameOfReferenceUID
    assert vol.warnings == ()


def test_five_slice_real_series_sorted_along_normal() -> None:
    paths = sorted(CT5N.iterdir())
    datasets = [pydicom.dcmread(p) for p in paths]
    by_z = sorted(datasets, key=lambda d: float(d.ImagePositionPatient[2]))
    vol = load_series(paths[::-1])
    assert vol.shape == (5, 16, 16)
    assert vol.sop_instance_uids == tuple(d.SOPInstanceUID for d in by_z)
    assert np.allclose(vol.affine[:3, 0], [0, 0, 2.5])
    assert np.allclose(vol.affine[:3, 3], [float(v) for v in by_z[0].ImagePositionPatient])
    for k, d in enumerate(by_z):
        hu = d.pixel_array.astype(np.int32) * float(d.RescaleSlope) + float(d.RescaleIntercept)
        assert np.array_equal(vol.voxels[k], hu)
        z = float(d.ImagePositionPatient[2])
        assert vol.world_to_index([-72.2, -143.0, z]) == pytest.approx([k, 0, 0], abs=1e-4)
    assert vol.warnings == ()


def test_real_series_with_a_far_slice_keeps_the_contiguous_block() -> None:
    folder = TEST_FILES / "dicomdirtests" / "77654033" / "CT2"
    vol = load_series(sorted(folder.iterdir()))
    assert vol.shape == (3, 16, 16)
    assert vol.affine[2, 3] == pytest.approx(103.019997)
    assert np.allclose(vol.affine[:3, 0], [0, 0, 1.25], atol=1e-4)
    (w,) = vol.warnings
    assert w.startswith("slices far from the stack") and str(folder / "17106") in w


# ------------------------------------------------------------------------------------------
# Synthetic series with a sphere at a known place


def test_axial_shuffled_files(tmp_path: Path) -> None:
    centre = (1.0, -2.0, -7.0)
    paths = write_series(tmp_path, _axial(12), spheres=[(centre, 4.5)])
    vol = load_series(paths)
    assert vol.shape == (12, 24, 24)
    assert vol.voxels.dtype == np.int16
    assert vol.warnings == ()
    assert np.allclose(vol.affine[:3, 0], [0, 0, 2])
    assert vol.affine[2, 3] == pytest.approx(-20.0)
    assert_sphere_at(vol, centre)
    assert set(vol.voxels.ravel().tolist()) == {SPHERE_HU, BACKGROUND_HU}


def _rotation(a: float, b: float, c: float) -> npt.NDArray[np.float64]:
    ca, sa, cb, sb, cc, sc = (
        math.cos(a),
        math.sin(a),
        math.cos(b),
        math.sin(b),
        math.cos(c),
        math.sin(c),
    )
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    out: npt.NDArray[np.float64] = rz @ ry @ rx
    return out


def test_oblique_orientation(tmp_path: Path) -> None:
    r = _rotation(0.4, -0.3, 0.25)
    row_dir, col_dir, normal = r[:, 0], r[:, 1], r[:, 2]
    origin = np.array([-15.0, 10.0, 30.0])
    step = 1.5
    positions = [tuple(origin + k * step * normal) for k in range(14)]
    centre = tuple(origin + 11 * row_dir * 1.2 + 9 * col_dir * 1.1 + 6.3 * step * normal)
    paths = write_series(
        tmp_path,
        positions[::-1],  # written from the far end
        row_dir=tuple(row_dir),
        col_dir=tuple(col_dir),
        spacing=(1.1, 1.2),
        spheres=[(centre, 4.0)],
    )
    vol = load_series(paths)
    assert vol.warnings == ()
    assert np.allclose(vol.affine[:3, 0], step * normal, atol=1e-5)
    assert np.allclose(vol.affine[:3, 1], 1.1 * col_dir, atol=1e-6)
    assert np.allclose(vol.affine[:3, 2], 1.2 * row_dir, atol=1e-6)
    assert_sphere_at(vol, centre)


def test_gantry_tilt_uses_true_step(tmp_path: Path) -> None:
    tilt = math.radians(15.0)
    step = np.array([0.0, 2.0 * math.tan(tilt), 2.0])  # table moves along z, slices shear in y
    origin = np.array([-11.5, -11.5, 0.0])
    positions = [tuple(origin + k * step) for k in range(12)]
    centre = (0.5, 1.0, 11.0)
    paths = write_series(tmp_path, positions, spheres=[(centre, 4.5)])
    vol = load_series(paths)
    assert np.allclose(vol.affine[:3, 0], step, atol=1e-5)
    assert any("gantry tilt 15.0 degrees" in w for w in vol.warnings), vol.warnings
    assert_sphere_at(vol, centre)


def test_missing_slice_keeps_true_positions(tmp_path: Path) -> None:
    positions = [p for k, p in enumerate(_axial(14)) if k != 4]
    centre = (0.0, 0.0, 2.0)  # beyond the gap: index 11 only if the gap is accounted for
    paths = write_series(tmp_path, positions, spheres=[(centre, 4.5)])
    vol = load_series(paths)
    assert vol.shape[0] == 14
    assert vol.sop_instance_uids[4] == ""
    assert np.all(vol.voxels[4] == -1024)
    assert any(w.startswith("missing slices: 1 absent") for w in vol.warnings), vol.warnings
    assert_sphere_at(vol, centre)


def test_uneven_spacing_reported(tmp_path: Path) -> None:
    zs = [0.0, 2.0, 4.0, 6.0, 8.7, 10.7, 12.7, 14.7]
    paths = write_series(tmp_path, [(-11.5, -11.5, z) for z in zs])
    vol = load_series(paths)
    assert vol.shape[0] == 8
    (w,) = [w for w in vol.warnings if w.startswith("uneven slice spacing")]
    assert "from 2 to 2.7 mm" in w


def test_localizer_and_unequal_size_dropped_and_named(tmp_path: Path) -> None:
    centre = (0.0, 0.0, -8.0)
    paths = write_series(tmp_path / "ax", _axial(10), spheres=[(centre, 4.5)])
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    scout = _ct_dataset(
        position=(-100.0, 0.0, 100.0),
        row_dir=(1, 0, 0),
        col_dir=(0, 0, -1),
        spacing=(1.0, 1.0),
        hu=np.zeros((32, 40), np.int32),
        series_uid=uid,
        number=0,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    odd = _ct_dataset(
        position=(-11.5, -11.5, 0.0),
        row_dir=(1, 0, 0),
        col_dir=(0, 1, 0),
        spacing=(1.0, 1.0),
        hu=np.zeros((20, 24), np.int32),
        series_uid=uid,
        number=99,
    )
    scout_path = _save(scout, tmp_path / "scout.dcm")
    odd_path = _save(odd, tmp_path / "odd.dcm")
    vol = load_series([scout_path, *paths, odd_path])
    assert vol.shape == (10, 24, 24)
    assert any(w.startswith("localizer dropped") and str(scout_path) in w for w in vol.warnings)
    assert any(w.startswith("unequal sizes") and str(odd_path) in w for w in vol.warnings)
    assert_sphere_at(vol, centre)


def test_mixed_orientation_dropped(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "ax", _axial(8))
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    sagittal = [
        _save(
            _ct_dataset(
                position=(float(x), -11.5, 10.0),
                row_dir=(0, 1, 0),
                col_dir=(0, 0, -1),
                spacing=(1.0, 1.0),
                hu=np.zeros((24, 24), np.int32),
                series_uid=uid,
                number=50 + x,
            ),
            tmp_path / f"sag{x}.dcm",
        )
        for x in range(2)
    ]
    vol = load_series([*paths, *sagittal])
    assert vol.shape == (8, 24, 24)
    (w,) = [w for w in vol.warnings if w.startswith("mixed orientations")]
    assert "dropped 2 images" in w and all(str(p) in w for p in sagittal)


def test_two_acquisitions_keep_the_larger(tmp_path: Path) -> None:
    first = write_series(tmp_path / "a", _axial(10))
    uid = pydicom.dcmread(first[0]).SeriesInstanceUID
    second = []
    for n, pos in enumerate(_axial(6)):
        ds = _ct_dataset(
            position=pos,
            row_dir=(1, 0, 0),
            col_dir=(0, 1, 0),
            spacing=(1.0, 1.0),
            hu=np.zeros((24, 24), np.int32),
            series_uid=uid,
            number=100 + n,
            acquisition=2,
        )
        second.append(_save(ds, tmp_path / f"acq2_{n}.dcm"))
    vol = load_series([*second, *first])
    assert vol.shape[0] == 10
    assert set(vol.sop_instance_uids) == {pydicom.dcmread(p).SOPInstanceUID for p in first}
    (w,) = [w for w in vol.warnings if w.startswith("several acquisitions")]
    assert "kept acquisition 1 (10 slices)" in w and "dropped acquisition 2 (6 slices" in w


def test_hu_rescale_float_when_slope_not_one(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _axial(3), slope=0.5, intercept=-1000.5)
    vol = load_series(paths)
    assert vol.voxels.dtype == np.float32
    # stored = round((-1000 + 1000.5) / 0.5) = 1 -> 1 * 0.5 - 1000.5 = -1000
    assert np.all(vol.voxels == -1000.0)


@pytest.mark.parametrize(
    "syntax",
    [
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEGLSLossless,
        JPEG2000Lossless,
    ],
    ids=lambda s: s.name,
)
def test_transfer_syntaxes_give_the_same_hu(tmp_path: Path, syntax: str) -> None:
    centre = (0.0, 1.0, -10.0)
    # 32 x 32: JPEG 2000's default 6 resolution levels need at least 32 pixels a side.
    kw = {"rows": 32, "cols": 32, "spheres": [(centre, 4.0)]}
    ref = load_series(write_series(tmp_path / "ref", _axial(6), **kw))  # type: ignore[arg-type]
    vol = load_series(write_series(tmp_path / "enc", _axial(6), syntax=syntax, **kw))  # type: ignore[arg-type]
    assert pydicom.dcmread(next((tmp_path / "enc").iterdir())).file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(vol.voxels, ref.voxels)
    assert np.array_equal(vol.affine, ref.affine)
    assert vol.warnings == ()


def test_int16_overflow_is_clipped_and_counted() -> None:
    stored = np.array([[0, 1024, 40000, 65535]], dtype=np.uint16)
    out = np.empty((1, 4), np.int16)
    assert rescale_into(stored, 1.0, -1024.0, out) == 2
    assert out.tolist() == [[-1024, 0, 32767, 32767]]


# ------------------------------------------------------------------------------------------
# Enhanced (multi-frame) CT


def _enhanced_ct(
    path: Path, positions: Sequence[Vec], spheres: Sequence[tuple[Vec, float]]
) -> Path:
    rows = cols = 20
    row_dir, col_dir = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    slope, intercept = 2.0, -1024.0
    ds = Dataset()
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(positions)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = ["1.5", "1.25"]
    measures.SliceThickness = "2"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [*row_dir, *col_dir]
    shared.PlaneOrientationSequence = DicomSequence([orient])
    transform = Dataset()
    transform.RescaleSlope = f"{slope:g}"
    transform.RescaleIntercept = f"{intercept:g}"
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    pixels = []
    for n, pos in enumerate(positions):
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [f"{v:g}" for v in pos]
        item.PlanePositionSequence = DicomSequence([plane])
        content = Dataset()
        content.InStackPositionNumber = n + 1
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
        hu = _slice_hu(pos, row_dir, col_dir, (1.5, 1.25), rows, cols, spheres)
        stored = (hu - intercept) / slope
        stored = stored.astype("<u2") | np.uint16(0xF000)  # junk above BitsStored: masked
        pixels.append(stored.tobytes())
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = b"".join(pixels)
    ds["PixelData"].VR = "OW"
    return _save(ds, path)


def test_enhanced_ct_frames_sorted_and_rescaled(tmp_path: Path) -> None:
    zs = [10.0 - 2.0 * k for k in range(9)]  # frames stored head to feet
    positions = [(-12.0, -11.0, z) for z in zs]
    centre = (1.0, 2.0, 0.5)
    path = _enhanced_ct(tmp_path / "enh.dcm", positions, [(centre, 4.5)])
    vol = load_series([path])
    assert vol.shape == (9, 20, 20)
    assert vol.frame_numbers == tuple(range(9, 0, -1))
    assert len(set(vol.sop_instance_uids)) == 1
    assert vol.voxels.dtype == np.float32  # slope 2
    assert np.allclose(vol.affine[:3, 0], [0, 0, 2])
    assert np.allclose(vol.affine[:3, 1], [0, 1.5, 0])  # rows step along the column cosine
    assert np.allclose(vol.affine[:3, 2], [1.25, 0, 0])
    assert vol.warnings == ()
    assert set(np.unique(vol.voxels).tolist()) == {SPHERE_HU, BACKGROUND_HU}
    assert_sphere_at(vol, centre)


# ------------------------------------------------------------------------------------------
# Bad files, progress, cancel


def test_bad_files_become_warnings_naming_them(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _axial(6))
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(paths[0].read_bytes()[:-300])
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    vol = load_series([*paths[1:], truncated, text])
    assert vol.shape[0] >= 5
    assert any(w.startswith(f"{truncated}: pixel data is truncated") for w in vol.warnings)
    assert any(w.startswith(f"{text}: not a DICOM image") for w in vol.warnings)


def test_nothing_usable_raises_naming_series(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("hello")
    with pytest.raises(LoadError, match=rf"series {tmp_path} \(1 file\): no usable image.*a\.txt"):
        load_series([text])


def test_progress_reports_each_slice_with_partial_volume(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _axial(8), spheres=[((0.0, 0.0, -10.0), 4.0)])
    seen: list[LoadProgress] = []
    firsts: list[npt.NDArray[np.generic]] = []

    def on_progress(p: LoadProgress) -> None:
        seen.append(p)
        if p.index is not None:
            assert p.filled[p.index]
        if p.index == 0:
            firsts.append(p.voxels[0].copy())

    vol = load_series(paths, on_progress=on_progress)
    assert seen[0].index is None and seen[0].done == 0 and seen[0].total == 8
    assert [p.done for p in seen[1:]] == list(range(1, 9))
    assert sorted(p.index for p in seen[1:] if p.index is not None) == list(range(8))
    assert np.array_equal(firsts[0], vol.voxels[0])
    assert np.array_equal(seen[0].affine, vol.affine)


def test_geometry_known_before_pixels_and_first_slice_early(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _axial(8))
    loader = SeriesLoader(paths)
    assert loader.plan.shape == (8, 24, 24)
    k = next(loader.iter_slices(first=5))
    assert k == 5
    assert np.all(loader.voxels[5] == BACKGROUND_HU)
    assert loader.volume().shape == (8, 24, 24)


def test_cancel_stops_the_load(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _axial(8))
    stop = threading.Event()

    def on_progress(p: LoadProgress) -> None:
        if p.done >= 2:
            stop.set()

    with pytest.raises(LoadCancelled, match="cancelled"):
        load_series(paths, on_progress=on_progress, cancel=stop.is_set)


# ------------------------------------------------------------------------------------------
# The synthetic chest CT


def test_synthetic_chest_ct_nodules_map_to_their_voxels(tmp_path: Path) -> None:
    phantom = make_chest_ct(
        seed=5,
        slices=24,
        rows=96,
        cols=96,
        pixel_spacing_mm=3.5,
        slice_spacing_mm=5.0,
        nodule_count=2,
        min_nodule_mm=8.0,
        max_nodule_mm=12.0,
    )
    written = write_ct_series(
        phantom, tmp_path, patient_id="P", patient_name="P^P", uid_seed="loading-test"
    )
    vol = load_series(list(reversed(written.paths)))
    assert vol.warnings == ()
    assert vol.voxels.dtype == np.int16
    assert np.array_equal(vol.voxels, phantom.hu)
    assert vol.sop_instance_uids == written.sop_instance_uids
    x0, y0, z0 = phantom.origin_mm
    dz, dy, dx = phantom.spacing_mm
    for nodule in phantom.nodules:
        x, y, z = nodule.center_mm
        expected = [(z - z0) / dz, (y - y0) / dy, (x - x0) / dx]
        idx = vol.world_to_index(nodule.center_mm)
        assert idx == pytest.approx(expected, abs=1e-3)
        assert idx == pytest.approx(np.round(idx), abs=1e-3)  # on a voxel centre
