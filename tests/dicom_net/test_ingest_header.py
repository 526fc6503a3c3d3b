"""The one-pass header check of received data sets agrees with pydicom, whole or in fragments."""

from __future__ import annotations

import struct

import pytest

from dicom_net.header import read_header
from dicom_net.ingest import _fast_header, _fast_header_stream, _part10_prefix


def _split(path):
    raw = path.read_bytes()
    meta_len = struct.unpack("<I", raw[140:144])[0]
    return raw, raw[144 + meta_len :]


@pytest.mark.parametrize("fragment", [200, 4096, 16384, 10**9])
def test_streamed_header_matches_pydicom(small_ct, fragment):
    for path in small_ct.paths[:3]:
        raw, dataset = _split(path)
        expected = read_header(raw)
        prefix = _part10_prefix(
            expected.sop_class_uid, expected.sop_instance_uid, expected.transfer_syntax_uid
        )
        assert prefix is not None
        parts = [dataset[i : i + fragment] for i in range(0, len(dataset), fragment)]
        got = _fast_header_stream(prefix, [memoryview(p) for p in parts], len(dataset))
        if fragment == 200:
            assert got is None  # the header does not fit the first fragment: general path
        else:
            assert got == expected
        assert _fast_header(prefix + dataset) == expected


def test_streamed_header_refuses_what_does_not_add_up(small_ct):
    raw, dataset = _split(small_ct.paths[0])
    h = read_header(raw)
    prefix = _part10_prefix(h.sop_class_uid, h.sop_instance_uid, h.transfer_syntax_uid)
    assert prefix is not None
    first = [memoryview(dataset[:16384])]
    # The pixel data must end exactly at the announced total: shorter or longer is refused.
    assert _fast_header_stream(prefix, first, len(dataset) - 2) is None
    assert _fast_header_stream(prefix, first, len(dataset) + 2) is None
    assert _fast_header_stream(prefix, first, len(dataset)) == h
