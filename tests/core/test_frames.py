"""Endoscopy frames: synthetic VL Endoscopic study, YBR JPEG and RGB multi-frame files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    generate_uid,
)

from core.frames import FrameError, FrameKey, open_frames
from core.loading import LoadError
from core.synthetic.endoscopy import write_endoscopy_study

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]


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
