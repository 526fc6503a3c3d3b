"""Import DICOM files, folders and DICOMDIR media into the local archive."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from dicom_net.archive import LocalArchive
from dicom_net.errors import ArchiveError

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    imported: int = 0
    replaced: int = 0
    studies: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def _dicomdir_files(path: Path) -> Iterator[Path]:
    """Files referenced by a DICOMDIR (PS3.10 media), resolved against its folder."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise ArchiveError(f"{path}: unreadable DICOMDIR ({exc})") from exc
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(ref)] if isinstance(ref, str) else [str(p) for p in ref]
        if any(p in ("..", "") or "/" in p or "\\" in p for p in parts):
            log.warning("%s: skipping unsafe ReferencedFileID %s", path, parts)
            continue
        yield path.parent.joinpath(*parts)


def _is_dicomdir(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


def collect_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand files, folders (recursively) and DICOMDIRs into candidate files."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            dicomdir = next((c for c in p.iterdir() if _is_dicomdir(c)), None)
            if dicomdir is not None:
                yield from _dicomdir_files(dicomdir)
                continue
            for child in sorted(p.rglob("*")):
                if child.is_file() and not _is_dicomdir(child):
                    yield child
        elif _is_dicomdir(p):
            yield from _dicomdir_files(p)
        else:
            yield p


def import_paths(
    archive: LocalArchive,
    paths: Iterable[Path],
    *,
    on_error: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import everything found; a bad file is reported in one line (its name and the problem,
    see dataset_check.py) and the rest goes on."""
    report = ImportReport()
    for f in collect_files(paths):
        if not f.exists():
            msg = f"{f}: no such file"
        else:
            try:
                stored = archive.store_file(f)
            except ArchiveError as exc:
                msg = str(exc)
            except Exception as exc:  # a reader failing in a way not foreseen: still one line
                log.debug("importing %s failed", f, exc_info=True)
                msg = f"{f}: cannot be imported ({type(exc).__name__})"
            else:
                report.imported += 1
                report.replaced += int(stored.replaced)
                report.studies.add(stored.header.study_instance_uid)
                continue
        report.errors.append(msg)
        if on_error is not None:
            on_error(msg)
    return report
