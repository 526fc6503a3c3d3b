"""`loupe import` (files, folders, DICOMDIR) and `loupe studies`."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from pydicom.data import get_testdata_file

from dicom_net.archive import LocalArchive, file_name_for

DICOMDIR = Path(get_testdata_file("DICOMDIR"))  # pydicom's bundled media: 3 patients


def test_import_folder_then_again_counts_once(loupe, small_ct, tmp_path):
    loupe.write_config()
    folder = tmp_path / "in"
    shutil.copytree(small_ct.paths[0].parent, folder)
    (folder / "notes.txt").write_text("not DICOM")
    r = loupe.run("import", str(folder))
    assert r.returncode == 0, r.stderr
    assert (
        f"imported {len(small_ct.paths)} instances (0 replaced) in 1 studies; 1 files skipped"
        in r.stdout
    )
    assert "notes.txt: not a DICOM file" in r.stderr

    r = loupe.run("import", str(folder))
    assert f"({len(small_ct.paths)} replaced)" in r.stdout
    r = loupe.run("studies", "--json")
    (study,) = json.loads(r.stdout)
    assert study["instance_count"] == len(small_ct.paths)
    assert study["patient_name"] == "Test^Smallct" and study["modalities"] == ["CT"]
    assert study["study_date"] == "20250102" and study["retrieve_state"] is None
    archive = LocalArchive(loupe.storage)
    for inst in archive.instances():
        assert inst.path == archive.files_dir / file_name_for(inst.sop_instance_uid)
        original = small_ct.paths[0].parent / f"CT{inst.instance_number:06d}.dcm"
        assert inst.path.read_bytes() == original.read_bytes()  # stored as given


def test_import_dicomdir(loupe):
    loupe.write_config()
    r = loupe.run("import", str(DICOMDIR))
    assert r.returncode == 0, r.stderr
    studies = json.loads(loupe.run("studies", "--json").stdout)
    names = {s["patient_name"] for s in studies}
    assert {"Doe^Archibald", "Doe^Peter"} <= names
    total = sum(s["instance_count"] for s in studies)
    assert total == 31  # every image record of pydicom's DICOMDIR


def test_import_of_a_truncated_file_names_it_and_keeps_the_rest(loupe, small_ct, tmp_path):
    loupe.write_config()
    cut = tmp_path / "cut.dcm"
    data = small_ct.paths[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    r = loupe.run("import", str(cut), str(small_ct.paths[1]))
    assert r.returncode == 0
    assert "cut.dcm: truncated" in r.stderr
    assert LocalArchive(loupe.storage).instance_count() == 1


def test_import_nothing_valid_fails(loupe, tmp_path):
    loupe.write_config()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 1000)
    r = loupe.run("import", str(junk))
    assert r.returncode == 1 and "nothing imported" in r.stderr and "junk.bin" in r.stderr


def _nested_sequences(depth: int) -> bytes:
    """Content Sequence (0040,A730) nested `depth` deep, undefined lengths (explicit VR LE)."""
    sq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sq + item) * depth + ends * depth


def test_import_reports_a_deeply_nested_file_in_one_line_and_imports_the_rest(
    loupe, small_ct, tmp_path
):
    loupe.write_config()
    folder = tmp_path / "in"
    shutil.copytree(small_ct.paths[0].parent, folder)
    data = small_ct.paths[0].read_bytes()
    pixels = data.index(b"\xe0\x7f\x10\x00OW")
    # Sorted before the good files: the import used to die on it and skip all that follow.
    deep = folder / "A_deep.dcm"
    deep.write_bytes(data[:pixels] + _nested_sequences(300) + data[pixels:])
    r = loupe.run("import", str(folder))
    assert r.returncode == 0, r.stderr
    assert (
        f"imported {len(small_ct.paths)} instances (0 replaced) in 1 studies; 1 files skipped"
        in r.stdout
    )
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    (line,) = [m for m in r.stderr.splitlines() if "A_deep.dcm" in m]
    assert line == f"skipped: {deep}: sequences nested more than 64 levels deep"
