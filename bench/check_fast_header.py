"""Check dicom_net.ingest's one-pass header against the pydicom path it short-cuts.

    .venv/bin/python bench/check_fast_header.py

For every object of a corpus (pydicom's test files, the bench CT series, truncated copies and
hand-made edge cases) the fast pass must either decline (None) or give exactly the header that
check_complete + read_header give; it must never accept what they refuse. Also checks that
ingest's Part 10 assembly is byte for byte pynetdicom's `encoded_dataset()`.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.presentation import build_context

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicom_net.errors import ArchiveError  # noqa: E402
from dicom_net.header import check_complete, read_header  # noqa: E402
from dicom_net.ingest import _fast_header, _part10  # noqa: E402


def slow(data: bytes) -> object:
    try:
        check_complete(data, source="x")
        return read_header(data, source="x")
    except ArchiveError as exc:
        return f"refused: {exc}"
    except Exception as exc:  # header.py lets a few errors through: count them apart
        return f"raised {type(exc).__name__}: {exc}"


def part10(ds: Dataset, implicit: bool = False) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CTImageStorage)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def base(**kw: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Doe^John"
    ds.PatientID = "P1"
    ds.Modality = "CT"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 7
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = b"\0" * 8
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def edge_cases() -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = []
    cases.append(("plain explicit", part10(base())))
    cases.append(("plain implicit", part10(base(), implicit=True)))
    cases.append(("IS with sign/spaces", part10(base(SeriesNumber="+5", InstanceNumber=" 12"))))
    cases.append(("IS decimal", part10(base(InstanceNumber="1.0"))))
    cases.append(("IS empty", part10(base(InstanceNumber=None))))
    cases.append(("multi-valued IS", part10(base(InstanceNumber=["1", "2"]))))
    cases.append(("multi-valued CS", part10(base(Modality=["CT", "PT"]))))
    cases.append(("PN components", part10(base(PatientName="Doe^John^^Dr=ID^EO"))))
    cases.append(("PN trailing carets", part10(base(PatientName="Doe^John^^^"))))
    cases.append(("PN empty", part10(base(PatientName=""))))
    cases.append(
        ("latin-1 name", part10(base(SpecificCharacterSet="ISO_IR 100", PatientName="Müller")))
    )
    cases.append(
        ("utf-8 name", part10(base(SpecificCharacterSet="ISO_IR 192", PatientName="山田^太郎")))
    )
    cases.append(
        (
            "ascii name, JIS",
            part10(base(SpecificCharacterSet="ISO 2022 IR 87", PatientName="Yamada")),
        )
    )
    cases.append(("no pixels", part10(base(PixelData=None))))
    d = base()
    del d.PixelData
    cases.append(("rows without pixels", part10(d)))
    d = base()
    del d.SOPInstanceUID
    cases.append(("missing SOP Instance UID", part10(d)))
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid()
    nested = Dataset()
    nested.CodeValue = "1"
    item.ConceptNameCodeSequence = Sequence([nested])
    cases.append(("sequence", part10(base(ReferencedImageSequence=Sequence([item, item])))))
    # undefined-length sequences: pydicom writes them when is_undefined_length is set
    ds = base(ReferencedImageSequence=Sequence([item]))
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    cases.append(("undefined-length sequence", part10(ds)))
    ds = base(ReferencedImageSequence=Sequence([item]))
    ds["ReferencedImageSequence"].is_undefined_length = True
    cases.append(("undefined-length sequence implicit", part10(ds, implicit=True)))
    # trailing NUL in a LO (bad padding) and in a UI (good padding)
    good = part10(base(PatientID="P12"))
    cases.append(("LO with NUL padding", good.replace(b"P12\x00", b"P1\x00\x00")))
    cases.append(("LO with leading space", part10(base(PatientID=" P1"))))
    return cases


def pydicom_corpus() -> list[tuple[str, bytes]]:
    out = []
    folder = Path(pydicom.data.__file__).parent
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if len(data) > 132 and data[128:132] == b"DICM":
            out.append((str(p.relative_to(folder)), data))
    return out


def bench_series() -> list[tuple[str, bytes]]:
    folder = ROOT / "bench" / "out" / "ct-300"
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.dcm"))[:20]]


def truncations(corpus: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    out = []
    for name, data in corpus[:60]:
        n = len(data)
        for cut in sorted({n - 1, n - 2, n - 5000, n // 2, n // 3, 200, 300, 400, n - 17}):
            if 132 < cut < n:
                out.append((f"{name}[:{cut}]", data[:cut]))
    return out


def check_part10() -> int:
    bad = 0
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, "1.2.840.10008.1.2.4.50"):
        for uid in ("1.2.3", "1.2.34", generate_uid()):
            req = C_STORE()
            req.AffectedSOPClassUID = CTImageStorage
            req.AffectedSOPInstanceUID = uid
            req.DataSet = io.BytesIO(b"\x08\x00\x16\x00UI\x02\x001\x00")
            cx = build_context(CTImageStorage, ts)
            cx.context_id = 1
            cx._as_scp = True
            ev = Event(None, evt.EVT_C_STORE, {"request": req, "context": cx.as_tuple})  # type: ignore[arg-type]
            if _part10(ev) != ev.encoded_dataset(include_meta=True):
                print(f"MISMATCH part10 ts={ts} uid={uid}")
                bad += 1
    return bad


def main() -> int:
    stats: Counter[str] = Counter()
    failures = 0
    base_corpus = pydicom_corpus() + bench_series()
    for name, data in edge_cases() + base_corpus + truncations(base_corpus):
        fast = _fast_header(data)
        ref = slow(data)
        if isinstance(ref, str) and ref.startswith("raised"):
            stats["pydicom path raises (not ArchiveError)"] += 1
            print(f"note: {name}: check_complete/read_header {ref}")
        if fast is None:
            stats["declined (pydicom path)"] += 1
            continue
        if fast != ref:
            failures += 1
            print(f"MISMATCH {name}:\n  fast {fast}\n  slow {ref}")
        else:
            stats["fast == pydicom"] += 1
    failures += check_part10()
    print(dict(stats), "failures:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
