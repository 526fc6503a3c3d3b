"""Reopening an analysed CT: how long after the first image the findings are on screen.

    xvfb-run -a -s "-screen 0 1600x960x24" .venv/bin/python bench/reopen_study.py [--repeats 5]

A 300-slice 512 x 512 CT (core.synthetic.chest_ct, generated once into bench/out/) is
imported into a fresh archive and opened in the workstation: the first open runs the model
(the baseline, measured from the first image to the findings on screen), then the study is
reopened `repeats` times in new windows on the same storage (a reader coming back to it):
the stored analysis is shown with the first image. Medians; goal <= 1 s after the first
image (issue 10). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtWidgets import QApplication  # noqa: E402

from app.settings import parse_settings  # noqa: E402
from app.workstation import Workstation  # noqa: E402
from core.synthetic.chest_ct import make_chest_ct, write_ct_series  # noqa: E402
from dicom_net.archive import LocalArchive  # noqa: E402
from dicom_net.importer import import_paths  # noqa: E402

OUT = ROOT / "bench" / "out" / "reopen-ct-300"


def series() -> Path:
    if not (OUT / "done").exists():
        OUT.mkdir(parents=True, exist_ok=True)
        ph = make_chest_ct(seed=3030, slices=300, rows=512, cols=512, pixel_spacing_mm=0.7,
                           slice_spacing_mm=1.0, nodule_count=5)  # fmt: skip
        write_ct_series(ph, OUT, patient_id="BENCH-RE", patient_name="Bench^Reopen")
        (OUT / "done").write_text("ok")
    return OUT


def open_once(app: QApplication, settings, archive, study_uid: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    win = Workstation(settings, archive)
    win.show()
    t0 = time.perf_counter()
    win.open_study(study_uid)
    deadline = t0 + 600
    while time.perf_counter() < deadline:
        app.processEvents()
        if win.loaded_at is not None and win.analysis is not None:
            break
        time.sleep(0.005)
    else:
        raise SystemExit("the study did not open with its analysis in 10 minutes")
    shown = win.stored_shown_s if win.stored_shown_s is not None else time.perf_counter()
    first = t0 + (win.first_image_s or 0.0)
    out = {
        "first_image_s": round(win.first_image_s or 0.0, 3),
        "findings_after_first_image_s": round(shown - first, 3),
        "stored": win.stored_shown_s is not None,
        "findings": len(list(win.findings)),
    }
    win.close()
    app.processEvents()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    app = QApplication.instance() or QApplication([])
    src = series()
    with tempfile.TemporaryDirectory(prefix="loupe-bench-reopen-") as tmp:
        settings = parse_settings({"local": {"storage": str(Path(tmp) / "archive"),
                                             "port": 11190, "bind": "127.0.0.1"},
                                   "user": "bench"})  # fmt: skip
        archive = LocalArchive(settings.storage)
        import_paths(archive, [src])
        study_uid = archive.studies()[0].study_instance_uid
        fresh = open_once(app, settings, archive, study_uid)
        again = [open_once(app, settings, archive, study_uid) for _ in range(args.repeats)]
    result = {
        "slices": 300,
        "fresh_findings_after_first_image_s": fresh["findings_after_first_image_s"],
        "reopen_findings_after_first_image_s_median": statistics.median(
            r["findings_after_first_image_s"] for r in again
        ),
        "reopen_first_image_s_median": statistics.median(r["first_image_s"] for r in again),
        "reopen_all_stored": all(r["stored"] for r in again),
        "findings": fresh["findings"],
        "repeats": args.repeats,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
