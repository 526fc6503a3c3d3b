"""Endoscopy frames: synthetic VL Endoscopic study, YBR JPEG and RGB multi-frame files."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from peers import require_tool
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    VLEndoscopicImageStorage,
    generate_uid,
)

from core.frames import FrameError, FrameKey, open_frames
from core.loading import LoadError
from core.synthetic.endoscopy import make_endoscopy_frame, write_endoscopy_study

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]


@pytest.mark.slow
def test_synthetic_endoscopy_study_gives_24_rgb_frames(tmp_path: Path) -> None:
    written, _ = write_endoscopy_study(
        tmp_path, seed=3, patient_id="E", patient_name="E^E", uid_seed="frames-test"
    )
    frames = open_frames(list(reversed(written.paths)))
    assert len(frames) == 24
    assert frames.frame_keys() == tuple(FrameKey(uid, 1) for uid in written.sop_instance_uids)
    for n in (0, 23):
        rgb = frames.rgb(n)
        assert rgb.dtype == np.uint8 and rgb.shape == (480, 480, 3)
        assert np.array_equal(rgb, pydicom.dcmread(written.paths[n]).pixel_array)
    assert frames.index_of(FrameKey(written.sop_instance_uids[5], 1)) == 5
    assert frames.warnings == ()


def test_ybr_full_422_jpeg_multi_frame_converted_to_rgb() -> None:
    path = TEST_FILES / "examples_ybr_color.dcm"
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    frames = open_frames([path])
    assert len(frames) == int(ds.NumberOfFrames)
    assert [k.frame_number for k in frames.frame_keys()] == list(range(1, len(frames) + 1))
    rgb = frames.rgb(len(frames) - 1)
    assert rgb.shape == (ds.Rows, ds.Columns, 3) and rgb.dtype == np.uint8
    # pydicom's own YBR->RGB conversion of the same frame
    expected = pydicom.pixels.pixel_array(path, index=len(frames) - 1)
    assert np.array_equal(rgb, expected)


def test_ybr_jpeg_matches_uncompressed_rgb() -> None:
    ref = open_frames([TEST_FILES / "SC_rgb_dcmtk_+eb+cr.dcm"]).rgb(0)
    jpeg = open_frames([TEST_FILES / "SC_rgb_jpeg_dcmtk.dcm"]).rgb(0)  # YBR_FULL baseline JPEG
    assert np.abs(jpeg.astype(int) - ref.astype(int)).mean() < 3


def _rgb_multi_frame(path: Path, colours: list[tuple[int, int, int]]) -> str:
    ds = Dataset()
    ds.SOPClassUID = MultiFrameTrueColorSecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "ES"
    ds.NumberOfFrames = len(colours)
    ds.Rows, ds.Columns = 8, 10
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    frames = np.zeros((len(colours), 8, 10, 3), np.uint8)
    for n, c in enumerate(colours):
        frames[n] = c
    ds.PixelData = frames.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def test_rgb_multi_frame_frames_by_number(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    uid = _rgb_multi_frame(tmp_path / "mf.dcm", colours)
    frames = open_frames([tmp_path / "mf.dcm"])
    for n, colour in enumerate(colours, start=1):
        rgb = frames.rgb(frames.index_of(FrameKey(uid, n)))
        assert rgb.shape == (8, 10, 3)
        assert tuple(rgb[4, 5]) == colour


def test_bad_files_are_named(tmp_path: Path) -> None:
    _rgb_multi_frame(tmp_path / "good.dcm", [(1, 2, 3)])
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    frames = open_frames([tmp_path / "good.dcm", tmp_path / "junk.dcm"])
    assert len(frames) == 1
    assert any(str(tmp_path / "junk.dcm") in w for w in frames.warnings)
    with pytest.raises(LoadError, match=r"junk\.dcm"):
        open_frames([tmp_path / "junk.dcm"])


def test_undecodable_frame_raises_frame_error_naming_file(tmp_path: Path) -> None:
    _rgb_multi_frame(tmp_path / "mf.dcm", [(1, 2, 3), (4, 5, 6)])
    data = (tmp_path / "mf.dcm").read_bytes()
    (tmp_path / "short.dcm").write_bytes(data[: len(data) - 200])
    frames = open_frames([tmp_path / "short.dcm"])
    with pytest.raises(FrameError, match=r"short\.dcm: frame 2"):
        frames.rgb(1)


# --- JPEG baseline (the format of almost every captured endoscopy still) against DCMTK ---


def _vl_endoscopic(path: Path, rgb: np.ndarray, jpeg: bytes | None, photometric: str) -> None:
    """A VL Endoscopic image: uncompressed RGB, or one baseline JPEG frame as given."""
    ds = Dataset()
    ds.SOPClassUID = VLEndoscopicImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "ES"
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if jpeg is None:
        ds.PixelData = rgb.tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.PixelData = encapsulate([jpeg])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)


def _chroma_sampling(jpeg: bytes) -> tuple[int, int]:
    """(horizontal, vertical) sampling factors of the first component, from the SOF0 marker:
    (2, 1) is 4:2:2, (1, 1) is 4:4:4."""
    i = jpeg.index(b"\xff\xc0")
    hv = jpeg[i + 11]  # SOF0: length(2) precision(1) rows(2) cols(2) count(1) id(1) HV(1)
    return hv >> 4, hv & 0x0F


@pytest.mark.parametrize(
    ("encoder", "chroma"),
    [("pillow", "422"), ("pillow", "444"), ("dcmcjpeg", "422"), ("dcmcjpeg", "444")],
)
def test_jpeg_baseline_decodes_like_dcmdjpeg(tmp_path: Path, encoder: str, chroma: str) -> None:
    """core.frames and DCMTK's dcmdjpeg decode the same JPEG baseline frame to the same RGB.

    Tolerance: at most 3 levels per sample and 0.5 on average. Both decoders are libjpeg
    (integer IDCT, 'fancy' triangular chroma upsampling; here they agree exactly); the
    margin absorbs another libjpeg build (libjpeg-turbo SIMD or float IDCT), which differs
    by rounding. Converting YBR to RGB twice, the bug this guards against, is off by ~60.
    """
    dcmcjpeg, dcmdjpeg = require_tool("dcmcjpeg"), require_tool("dcmdjpeg")
    rgb, _ = make_endoscopy_frame(seed=5, rows=120, cols=160, lesion=True)
    photometric = {"422": "YBR_FULL_422", "444": "YBR_FULL"}[chroma]
    src = tmp_path / "jpeg.dcm"
    if encoder == "pillow":
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=90, subsampling=int(chroma == "422"))
        _vl_endoscopic(src, rgb, buf.getvalue(), photometric)
    else:
        _vl_endoscopic(tmp_path / "plain.dcm", rgb, None, "RGB")
        flag = {"422": "+s2", "444": "+s4"}[chroma]
        subprocess.run([dcmcjpeg, "+eb", flag, str(tmp_path / "plain.dcm"), str(src)], check=True)
    ds = pydicom.dcmread(src)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.PhotometricInterpretation == photometric
    jpeg_bytes = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert _chroma_sampling(jpeg_bytes) == {"422": (2, 1), "444": (1, 1)}[chroma]

    subprocess.run([dcmdjpeg, str(src), str(tmp_path / "dcmtk.dcm")], check=True)
    ref_ds = pydicom.dcmread(tmp_path / "dcmtk.dcm")
    assert ref_ds.PhotometricInterpretation == "RGB" and ref_ds.PlanarConfiguration == 0
    reference = np.frombuffer(ref_ds.PixelData, np.uint8).reshape(120, 160, 3).astype(int)
    ours = open_frames([src]).rgb(0).astype(int)
    diff = np.abs(ours - reference)
    assert diff.max() <= 3 and diff.mean() <= 0.5, (diff.max(), diff.mean())
    # And both are the frame that was compressed (lossy at quality 90: a few levels).
    assert np.abs(ours - rgb.astype(int)).mean() < 4.0
