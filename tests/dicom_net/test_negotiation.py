"""What the receiver agrees to at association time, on both receive paths (dicom_net/contexts.py,
dicom_net/storage_server.py): only the transfer syntaxes we store, per presentation context,
and only requests that call our AE title. Raw A-ASSOCIATE-RQs and real DCMTK senders."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from peers import peer_env
from pydicom.data import get_testdata_file
from raw_requestor import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    CT_IMAGE,
    EXPLICIT_LE,
    STUDY_ROOT_FIND,
    associate,
    associate_rq,
    context_results,
    handmade_rq,
    receivers,
    release,
    request,
    store_raw,
)

from dicom_net.association_request import MAX_PEEKED_RQ
from dicom_net.storage_server import StorageServer

pytestmark = pytest.mark.network
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="pynetdicom")]

IMPLICIT_LE = "1.2.840.10008.1.2"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_XL = "1.2.840.10008.1.2.4.112"
HEVC = "1.2.840.10008.1.2.4.107"
MADE_UP = "1.2.3.4.5"
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
PRIVATE_CLASS = "1.2.826.0.1.3680043.8.498.4242"
VERIFICATION = "1.2.840.10008.1.1"
# Result 4 (PS3.8 9.3.3.2): transfer-syntaxes-not-supported (provider rejection).
REFUSED = 4


@pytest.fixture
def make_server(tmp_path) -> Iterator[Callable[[bool], StorageServer]]:
    yield from receivers(tmp_path, ("RAWSCU", "GOODSCU"))


# -- transfer syntaxes ----------------------------------------------------------------------
# (context ID, abstract syntax, proposed syntaxes in the sender's order, expected answer)
PROPOSALS: list[tuple[int, str, list[str], tuple[int, str | None]]] = [
    (1, CT_IMAGE, [MADE_UP], (REFUSED, None)),
    (3, CT_IMAGE, [JPEG_XL], (REFUSED, None)),
    (5, CT_IMAGE, [MADE_UP, EXPLICIT_LE], (0, EXPLICIT_LE)),
    (7, CT_IMAGE, [J2K_LOSSLESS, IMPLICIT_LE, EXPLICIT_LE], (0, EXPLICIT_LE)),
    (9, PRIVATE_CLASS, [MADE_UP], (REFUSED, None)),
    (11, PRIVATE_CLASS, [JPEG_XL, IMPLICIT_LE], (0, IMPLICIT_LE)),
    (13, VIDEO_ENDOSCOPIC, [HEVC], (0, HEVC)),  # video: stored as received
    (15, CT_IMAGE, [JPEG_XL, J2K_LOSSLESS], (0, J2K_LOSSLESS)),
    (17, VERIFICATION, [EXPLICIT_LE], (0, EXPLICIT_LE)),
]


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("with_query", [False, True], ids=["storage", "with-c-find"])
def test_only_transfer_syntaxes_we_store_are_accepted(make_server, fast, with_query):
    """With a C-FIND context too, even the fast-path server hands the request to pynetdicom."""
    server = make_server(fast)
    contexts = [(cx, a.encode(), [t.encode() for t in ts]) for cx, a, ts, _ in PROPOSALS]
    if with_query:
        contexts.append((19, STUDY_ROOT_FIND.encode(), [EXPLICIT_LE.encode()]))
    sock, pdu_type, body = request(server.port, handmade_rq(contexts))
    assert pdu_type == A_ASSOCIATE_AC
    results = context_results(body)
    for cx_id, _abstract, _ts, (result, syntax) in PROPOSALS:
        assert results[cx_id][0] == result, (cx_id, results[cx_id])
        if syntax is not None:
            assert results[cx_id][1] == syntax, (cx_id, results[cx_id])
    assert release(sock) == 0x06


def _storescu(
    dcmtk, port: int, options: list[str], files: list[Path]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk["storescu"], "-aet", "GOODSCU", *options, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env=peer_env(),
        timeout=60,
    )


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("compressed", ["-xs", "-xv", "-xy"])  # JPEG lossless, J2K, JPEG 8 bit
def test_storescu_combined_proposal_compressed_first_stores_each_object_as_it_was(
    make_server, dcmtk, fast, compressed
):
    """storescu +C proposes one context per SOP class, here with a compressed syntax first and
    the native ones after it; it cannot compress these native images, so accepting the first
    syntax proposed made every store fail."""
    server = make_server(fast)
    files = [Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm")]
    r = _storescu(dcmtk, server.port, ["-aec", "LOUPE", "+C", compressed], files)
    assert r.returncode == 0, r.stderr
    assert "Store Failed" not in r.stderr + r.stdout
    stored = {i.sop_instance_uid: i for i in server.archive.instances()}
    for f in files:
        ds = pydicom.dcmread(f)
        inst = stored[ds.SOPInstanceUID]
        assert inst.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
        assert pydicom.dcmread(inst.path).PixelData == ds.PixelData  # as sent


# -- the called AE title --------------------------------------------------------------------
def _called_ae_rejected(pdu_type: int, body: bytes) -> bool:
    """A-ASSOCIATE-RJ: rejected-permanent (1), service-user (1), called AE title not
    recognized (7)."""
    return pdu_type == A_ASSOCIATE_RJ and body[1:4] == b"\x01\x01\x07"


@pytest.mark.parametrize("fast", PATHS)
def test_association_calling_another_ae_title_is_rejected(make_server, dcmtk, small_ct, fast):
    server = make_server(fast)
    for abstract in (CT_IMAGE, STUDY_ROOT_FIND):  # fast path and pynetdicom's, on fast servers
        sock, pdu_type, body = request(server.port, associate_rq(abstract, called="NOTLOUPE"))
        assert _called_ae_rejected(pdu_type, body), (pdu_type, body)
        sock.close()
    # Too long to peek: pynetdicom reads it, and answers the same.
    syntaxes = [f"1.2.840.10008.1.2.4.{n}".encode() for n in range(50, 80)]
    contexts = [
        (2 * i + 1, CT_IMAGE.encode(), [EXPLICIT_LE.encode(), *syntaxes]) for i in range(128)
    ]
    long_rq = handmade_rq(contexts, called=b"NOTLOUPE")
    assert len(long_rq) > MAX_PEEKED_RQ
    sock, pdu_type, body = request(server.port, long_rq)
    assert _called_ae_rejected(pdu_type, body), (pdu_type, body)
    sock.close()

    r = _storescu(dcmtk, server.port, ["-aec", "ANY-SCP"], [small_ct.paths[0]])
    assert r.returncode != 0
    assert "Called AE Title Not Recognized" in r.stderr, r.stderr
    assert server.archive.instance_count() == 0
    # Our own title still works, on the same server.
    sock = associate(server.port, fast=fast)
    assert store_raw(sock, small_ct.paths[0])[0] == 0x0000
    assert release(sock) == 0x06
    assert server.archive.instance_count() == 1
