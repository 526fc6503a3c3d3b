"""The one-pass header check of received data sets agrees with pydicom, whole or from the
first fragment of a data set still arriving."""

from __future__ import annotations

import io
import struct

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import MPEG4HP41, JPEGBaseline8Bit

from dicom_net.dataset_check import Unacceptable, check_object, check_start
from dicom_net.header import read_header
from dicom_net.ingest import _part10_prefix


def _split(path):
    raw = path.read_bytes()
    meta_len = struct.unpack("<I", raw[140:144])[0]
    return raw, raw[144 + meta_len :]


@pytest.mark.parametrize("fragment", [200, 4096, 16384, 10**9])
def test_header_from_the_first_fragment_matches_pydicom(small_ct, fragment):
    for path in small_ct.paths[:3]:
        raw, dataset = _split(path)
        expected = read_header(raw)
        prefix = _part10_prefix(
            expected.sop_class_uid, expected.sop_instance_uid, expected.transfer_syntax_uid
        )
        assert prefix is not None
        got = check_start(expected.transfer_syntax_uid, memoryview(dataset)[:fragment])
        if fragment == 200:
            assert got is None  # the elements before the pixels do not fit: general path
        else:
            assert got == (expected, len(dataset))  # and it says where the data set ends
        assert check_object(prefix + dataset) == expected


def test_a_truncated_or_padded_data_set_does_not_match_the_announced_end(small_ct):
    raw, dataset = _split(small_ct.paths[0])
    h = read_header(raw)
    prefix = _part10_prefix(h.sop_class_uid, h.sop_instance_uid, h.transfer_syntax_uid)
    assert prefix is not None
    found = check_start(h.transfer_syntax_uid, dataset[:16384])
    assert found is not None and found[1] == len(dataset)
    # What the receiver checks at the end: anything else than the announced end is refused
    # by the check of the whole object.
    with pytest.raises(Unacceptable, match=r"truncated in element \(7FE0,0010\)"):
        check_object(prefix + dataset[:-2])
    with pytest.raises(Unacceptable, match="truncated in an element header"):
        check_object(prefix + dataset + b"\x00\x00")


def test_c_find_matches_are_read_by_a_walk():
    from pydicom.dataset import Dataset
    from pynetdicom.dsutils import encode

    from dicom_net.scu import ProtocolError, _match

    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SeriesInstanceUID = "1.2.3"
    ds.RetrieveAETitle = "ORTHANC"
    for implicit in (True, False):
        raw = encode(ds, implicit, True)
        assert _match(raw, implicit) == {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
            "SOPInstanceUID": "1.2.3.4",
            "SeriesInstanceUID": "1.2.3",
        }
    # Values come as sent (a multi-valued UID matches nothing local); garbage gives no UID
    # (the retrieve skips such a match) or a protocol error (a message, not a traceback).
    ds.SeriesInstanceUID = ["1.2.3", "1.2.4"]
    assert _match(encode(ds, True, True), True)["SeriesInstanceUID"] == "1.2.3\\1.2.4"
    try:
        assert not _match(b"\x08\x00\x18\x00\xff\xff\xff\x7f", True)["SOPInstanceUID"]
    except ProtocolError:
        pass


# pydicom's own test files, one or more per family of transfer syntax we store.
VALID_FILES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # deflated
    "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422: 2/3 of the samples
    "SC_rgb_small_odd.dcm",  # odd number of pixel bytes, padded
    "JPEG2000.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
    "waveform_ecg.dcm",  # no pixel data, none needed
    "rtdose.dcm",
    "reportsi.dcm",
]


@pytest.mark.parametrize("name", VALID_FILES)
def test_valid_objects_pass_the_full_parse_with_pydicoms_header(name):
    path = get_testdata_file(name)
    assert path is not None
    with open(path, "rb") as fh:
        raw = fh.read()
    header = check_object(raw)
    if "bigendian" in name:
        assert header is None  # checked; pydicom reads the values
    else:
        assert header == read_header(raw)


def _encapsulated(ts: str, sop_class: str, frames: int, fragments: list[bytes], table: bytes):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, "1.2.826.0.1.3680043.8.498.31"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_PARTIAL_420"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = frames
    items = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(f)) + f for f in fragments)
    ds.PixelData = struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table + items
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_video_stream_may_hold_many_frames_in_one_fragment_an_image_may_not():
    video = "1.2.840.10008.5.1.4.1.1.77.1.1.1"  # Video Endoscopic Image Storage
    stream = [b"\x00\x00\x01\xb3" + b"\x00" * 60]
    assert check_object(_encapsulated(MPEG4HP41, video, 30, stream, b"")) is not None
    with pytest.raises(Unacceptable, match="1 fragments of Pixel Data for 30 frames"):
        check_object(_encapsulated(JPEGBaseline8Bit, video, 30, stream, b""))


def test_a_basic_offset_table_must_point_at_each_frames_first_fragment():
    sc = "1.2.840.10008.5.1.4.1.1.7"
    frames = [b"\xff\xd8" + b"\x00" * 8 + b"\xff\xd9"] * 2  # 12 bytes each: items of 20
    good = struct.pack("<2I", 0, 20)
    assert check_object(_encapsulated(JPEGBaseline8Bit, sc, 2, frames, good)) is not None
    for table, problem in (
        (struct.pack("<2I", 0, 16), "points elsewhere"),
        (struct.pack("<I", 0), "1 entries for 2 frames"),
    ):
        with pytest.raises(Unacceptable, match=problem) as refused:
            check_object(_encapsulated(JPEGBaseline8Bit, sc, 2, frames, table))
        assert refused.value.status == 0xA900
