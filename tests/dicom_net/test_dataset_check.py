"""What the receiver acknowledges (dicom_net/dataset_check.py): every object fully parsed before
success, on both receive paths, with real sockets and a real server. Malformed objects are
refused with a status and an Error Comment that name the problem, nothing of them is indexed
or left on disk, the association goes on, and no patient data reaches the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pydicom
import pytest
from malformed import (
    MULTIFRAME_SC,
    ROWS,
    cut_before,
    multiframe_rle,
    split_part10,
    with_nested_sequences,
    with_rows,
    with_unknown_vr,
    without_last_fragment,
)
from raw_requestor import associate, dataset_of, receivers, release, store_dataset, store_raw

from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="pynetdicom")]
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
# What the test objects carry that must never reach a log line or a response.
PATIENT_DATA = ("Test^Smallct", "LOUPE-T2", "Test^Multiframe", "LOUPE-MF")


@pytest.fixture
def make_server(tmp_path) -> Iterator[Callable[[bool], StorageServer]]:
    yield from receivers(tmp_path, qr=False)


def _ct(small_ct, what: str) -> tuple[str, bytes]:
    uid, data = dataset_of(small_ct.paths[0])
    if what == "unknown VR ZZ":
        return uid, with_unknown_vr(data)
    if what == "last fragment before Rows":
        return uid, cut_before(data, ROWS)
    if what == "fewer pixel bytes than Rows x Columns":
        return uid, with_rows(data, 256)  # 128 x 128 pixels sent
    assert what == "sequences nested 200 deep"
    return uid, with_nested_sequences(data, 200)


CT_CASES = {
    "unknown VR ZZ": (0xC000, "(0009,1001) has unknown VR"),
    "last fragment before Rows": (0xA900, "without Pixel Data"),
    "fewer pixel bytes than Rows x Columns": (0xA900, "has 32768 bytes, the image needs 65536"),
    "sequences nested 200 deep": (0xC000, "nested more than 64 levels"),
}
MULTIFRAME_CASES = {
    "a fragment missing": (0xA900, "2 fragments of Pixel Data for 3 frames"),
    "cut inside the last fragment": (0xC000, "truncated in a fragment of Pixel Data"),
}


def _no_patient_data(caplog, rsp: dict) -> None:
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in PATIENT_DATA:
        assert value not in logged
        assert value.encode() not in b"".join(rsp.values())


def _refused(server, rsp: dict, status: int, expected: int, named: str) -> None:
    comment = rsp.get(0x0902, b"").decode("ascii").strip()
    assert (hex(status), named in comment) == (hex(expected), True), comment
    assert len(comment) <= 64  # LO
    assert server.archive.instance_count() == 0
    assert server.counters.refused == 1
    assert not list(server.archive.incoming_dir.iterdir())


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("what", list(CT_CASES))
def test_malformed_ct_is_refused_and_not_indexed(make_server, small_ct, caplog, fast, what):
    caplog.set_level(logging.DEBUG, logger="dicom_net")
    server = make_server(fast)
    sock = associate(server.port, fast=fast)
    uid, data = _ct(small_ct, what)
    status, rsp = store_dataset(sock, uid, data)
    _refused(server, rsp, status, *CT_CASES[what])
    assert server.archive.instance(uid) is None
    assert store_raw(sock, small_ct.paths[1])[0] == 0x0000  # the association goes on
    assert release(sock) == 0x06
    assert server.archive.instance_count() == 1
    _no_patient_data(caplog, rsp)


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("what", list(MULTIFRAME_CASES))
def test_broken_encapsulated_pixel_data_is_refused(make_server, caplog, fast, what):
    caplog.set_level(logging.DEBUG, logger="dicom_net")
    server = make_server(fast)
    good_uid, bad_uid = "1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.1002"
    _ts, data = split_part10(multiframe_rle(bad_uid))
    if what == "a fragment missing":
        data = without_last_fragment(data)
    else:
        data = data[:-30]
    sock = associate(server.port, MULTIFRAME_SC, RLE_LOSSLESS, fast=fast)
    status, rsp = store_dataset(sock, bad_uid, data, MULTIFRAME_SC, fragment=400)
    _refused(server, rsp, status, *MULTIFRAME_CASES[what])
    ts, good = split_part10(multiframe_rle(good_uid))
    assert ts == RLE_LOSSLESS
    assert store_dataset(sock, good_uid, good, MULTIFRAME_SC, fragment=400)[0] == 0x0000
    assert release(sock) == 0x06
    (stored,) = server.archive.instances()
    assert (stored.sop_instance_uid, stored.transfer_syntax_uid) == (good_uid, RLE_LOSSLESS)
    assert stored.path.read_bytes().endswith(good)  # as received
    assert pydicom.dcmread(stored.path).pixel_array[2, 15, 15] == 3 * 256 - 1
    _no_patient_data(caplog, rsp)


@pytest.mark.parametrize("fast", PATHS)
def test_data_set_of_another_sop_class_than_the_request_is_refused(make_server, small_ct, fast):
    """PS3.4: 0xA900, Data Set does not match SOP Class."""
    server = make_server(fast)
    uid, data = dataset_of(small_ct.paths[0])
    mr_image = b"1.2.840.10008.5.1.4.1.1.4"  # as long as CT Image Storage's UID
    data = data.replace(CT_IMAGE.encode(), mr_image, 1)  # SOP Class UID (0008,0016)
    sock = associate(server.port, fast=fast)
    status, rsp = store_dataset(sock, uid, data)
    _refused(server, rsp, status, 0xA900, "SOP Class UID differs")
    release(sock)
