"""Load a CT series into a HU volume: Loupe's loader against SimpleITK, in the same run.

    .venv/bin/python bench/load_volume.py [--repeats 5]

Series are generated once with core.synthetic.chest_ct into bench/out/ (git-ignored):
300 slices of 512 x 512 for time, 500 for memory. Times are medians of alternating runs on a
warm page cache. Memory is measured in a fresh child process per loader: tracemalloc peak
(numpy reports its buffers to it) and the rise of peak RSS (VmHWM) over the RSS after imports.
Goals: ours <= 0.5x SimpleITK's time; peak <= 2x the volume's bytes + 400 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from core.loading import LoadProgress, load_series  # noqa: E402
from core.synthetic.chest_ct import make_chest_ct, write_ct_series  # noqa: E402

OUT = ROOT / "bench" / "out"
MB = 1024 * 1024


def series(slices: int) -> list[Path]:
    """The bench series of `slices` slices, written once."""
    folder = OUT / f"load-ct-{slices}"
    paths = sorted(folder.glob("CT*.dcm"))
    if len(paths) != slices:
        print(f"writing {slices} slices to {folder} ...", flush=True)
        phantom = make_chest_ct(seed=7, slices=slices, rows=512, cols=512, nodule_count=4)
        written = write_ct_series(
            phantom, folder, patient_id="BENCH", patient_name="Bench^Load", uid_seed=f"b{slices}"
        )
        paths = sorted(written.paths)
    return paths


def load_ours(paths: list[Path]) -> np.ndarray:
    return load_series(paths).voxels


def load_sitk(paths: list[Path]) -> np.ndarray:
    folder = str(paths[0].parent)
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder)  # sorts along the normal
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return sitk.GetArrayFromImage(reader.Execute())


def first_slice_seconds(paths: list[Path]) -> tuple[float, float]:
    """(seconds until the first slice is in the volume, seconds until the geometry is known)."""
    start = time.perf_counter()
    marks: dict[str, float] = {}

    def on_progress(p: LoadProgress) -> None:
        key = "geometry" if p.index is None else "slice"
        marks.setdefault(key, time.perf_counter() - start)

    load_series(paths, on_progress=on_progress)
    return marks["slice"], marks["geometry"]


CHILD = r"""
import json, sys, tracemalloc
from pathlib import Path
sys.path.insert(0, {root!r})
import numpy as np, SimpleITK as sitk
from core.loading import load_series
paths = [Path(p) for p in json.loads(sys.argv[1])]
which = sys.argv[2]
def status(key):
    # VmHWM (peak RSS) belongs to this process image; ru_maxrss would carry the parent's
    # peak across fork + exec on Linux.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)
base_rss = status("VmRSS")
tracemalloc.start()
if which == "ours":
    vol = load_series(paths).voxels
else:
    r = sitk.ImageSeriesReader()
    r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(paths[0].parent)))
    vol = sitk.GetArrayFromImage(r.Execute())
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({{"nbytes": int(vol.nbytes), "dtype": str(vol.dtype),
                  "tracemalloc_peak": peak, "rss_rise": status("VmHWM") - base_rss}}))
"""


def memory(paths: list[Path], which: str) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps([str(p) for p in paths]), which],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs (>= 3)")
    args = parser.parse_args()
    repeats = max(3, args.repeats)

    paths = series(300)
    ours, peer = load_ours(paths), load_sitk(paths)  # warm the page cache and imports
    same = np.array_equal(ours, peer.astype(ours.dtype)) and np.array_equal(ours, peer)
    t_ours: list[float] = []
    t_sitk: list[float] = []
    for _ in range(repeats):
        for fn, times in ((load_ours, t_ours), (load_sitk, t_sitk)):
            start = time.perf_counter()
            fn(paths)
            times.append(time.perf_counter() - start)
    m_ours, m_sitk = statistics.median(t_ours), statistics.median(t_sitk)
    firsts = [first_slice_seconds(paths) for _ in range(repeats)]
    first = statistics.median(f[0] for f in firsts)
    geometry = statistics.median(f[1] for f in firsts)
    print(f"series: {len(paths)} slices 512 x 512, {ours.nbytes / MB:.0f} MB as {ours.dtype}")
    print(f"identical HU to SimpleITK: {same} (SimpleITK gives {peer.dtype})")
    print(
        f"load, median of {repeats}: ours {m_ours:.3f} s, SimpleITK {m_sitk:.3f} s, "
        f"ratio {m_ours / m_sitk:.2f}x (goal <= 0.5x)"
    )
    print(f"  ours   runs: {', '.join(f'{t:.3f}' for t in t_ours)}")
    print(f"  SITK   runs: {', '.join(f'{t:.3f}' for t in t_sitk)}")
    print(f"geometry known after {geometry:.3f} s; first slice after {first:.3f} s")

    big = series(500)
    for which in ("ours", "sitk"):
        m = memory(big, which)
        goal = 2 * m["nbytes"] + 400 * MB
        print(
            f"memory, 500 slices ({which}): volume {m['nbytes'] / MB:.0f} MB {m['dtype']}; "
            f"tracemalloc peak {m['tracemalloc_peak'] / MB:.0f} MB "
            f"({m['tracemalloc_peak'] / m['nbytes']:.2f}x); RSS rise {m['rss_rise'] / MB:.0f} MB "
            f"({m['rss_rise'] / m['nbytes']:.2f}x); goal <= {goal / MB:.0f} MB"
        )


if __name__ == "__main__":
    main()
