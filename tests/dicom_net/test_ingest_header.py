"""The one-pass header check of received data sets agrees with pydicom, whole or from the
first fragment of a data set still arriving."""

from __future__ import annotations

import struct

import pytest

from dicom_net.header import read_header
from dicom_net.ingest import _fast_header, _part10_prefix, header_from_start


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
        got = header_from_start(expected.transfer_syntax_uid, memoryview(dataset)[:fragment])
        if fragment == 200:
            assert got is None  # the elements before the pixels do not fit: general path
        else:
            assert got == (expected, len(dataset))  # and it says where the data set ends
        assert _fast_header(prefix + dataset) == expected


def test_a_truncated_or_padded_data_set_does_not_match_the_announced_end(small_ct):
    raw, dataset = _split(small_ct.paths[0])
    h = read_header(raw)
    prefix = _part10_prefix(h.sop_class_uid, h.sop_instance_uid, h.transfer_syntax_uid)
    assert prefix is not None
    found = header_from_start(h.transfer_syntax_uid, dataset[:16384])
    assert found is not None and found[1] == len(dataset)
    # What the receiver checks at the end: anything else than the announced end is refused
    # by the general path.
    assert _fast_header(prefix + dataset[:-2]) is None
    assert _fast_header(prefix + dataset + b"\x00\x00") is None


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
