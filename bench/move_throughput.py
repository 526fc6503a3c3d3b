"""C-MOVE receive throughput: Loupe's storage SCP versus DCMTK's storescp, same Orthanc source.

    .venv/bin/python bench/move_throughput.py [--slices 300] [--runs 3] [--variant NAME ...]

One Orthanc (TCP_NODELAY=1, MaximumPduLength 131072) holds a synthetic CT series (generated
once, cached under bench/out/). Runs alternate between
  (a) Loupe: StorageServer into a fresh LocalArchive + retrieve(..., method=MOVE);
  (b) DCMTK: storescp -pdu 131072 (TCP_NODELAY=1, no --fork) receiving a movescu C-MOVE.
Loupe time = C-MOVE association open .. final response .. release (the `_move` call(s) inside
retrieve()); the whole retrieve() call (C-FIND + checks) is reported too. DCMTK time = wall
time of the movescu process. MB = 10^6 bytes of the source Part 10 files.
Results go to bench/out/move_throughput.json. Each run must deliver every instance, or the
bench stops with an error.

Variants (--variant, repeatable; default "current" = the shipped defaults) are settings of
the receive path (see VARIANTS): the fast storage path or pynetdicom's acceptor
([local] fast_store), and how many parallel C-MOVEs a retrieve runs ([[nodes]] move_streams).
"pynetdicom" is the receive path before the fast path existed (pynetdicom's acceptor and
requestor, one C-MOVE). Each variant alternates with
DCMTK run by run, so drift and other load hit all sides alike.

Other test suites may share the machine: before each run the bench waits (--quiet-wait) for
idle CPUs and records how busy they were ("machine_busy_before" in the JSON). Creating files
under /work can cost ~0.4 ms per file on some machines: --workdir /var/tmp shows the
difference (both receivers then write there).

Profiling the receiver threads (cProfile via --profile sees only the calling thread):
    .venv/bin/py-spy record --gil --threads --format raw -o bench/out/spy.txt -- \
        .venv/bin/python bench/move_throughput.py --runs 3 --warmup 0 --no-dcmtk
    .venv/bin/python bench/spy_summary.py bench/out/spy.txt --match run_reactor
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import Orthanc, free_port, peer_env  # noqa: E402

import dicom_net.retrieve as retrieve_mod  # noqa: E402
from dicom_net.archive import LocalArchive  # noqa: E402
from dicom_net.nodes import (  # noqa: E402
    DEFAULT_MOVE_STREAMS,
    LocalNode,
    RemoteNode,
    RetrieveMethod,
)
from dicom_net.storage_server import StorageServer  # noqa: E402

OUT = ROOT / "bench" / "out"
ORTHANC_AET = "ORTHANC"
LOUPE_AET = "LOUPE"
DCMTK_AET = "DCMTKSCP"
MOVESCU_AET = "MOVESCU"
PDU = 131072
# variant -> (fast storage path, parallel C-MOVE streams, C-MOVE requestor is pynetdicom's)
VARIANTS: dict[str, tuple[bool, int, bool]] = {
    "current": (True, DEFAULT_MOVE_STREAMS, False),
    "streams-1": (True, 1, False),
    "streams-3": (True, 3, False),
    "streams-4": (True, 4, False),
    "pynetdicom-move": (True, DEFAULT_MOVE_STREAMS, True),
    "pynetdicom": (False, 1, True),
}


# -- test data -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]
    paths: tuple[Path, ...]
    total_bytes: int
    generator: str


def _write_fallback(n: int, out_dir: Path) -> tuple[str, str, list[str], list[Path]]:
    """Plain CT Image Storage slices (512x512 int16, explicit VR LE) written with pydicom."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    sop_uids, paths = [], []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.PatientID, ds.PatientName = "BENCH-MOVE", "Bench^Move"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "090000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.ImagePositionPatient = [0, 0, k * 2.5]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = rng.integers(-1024, 2000, (512, 512), dtype="<i2").tobytes()
        path = out_dir / f"CT{k + 1:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sop_uids.append(uid)
        paths.append(path)
    return study, series, sop_uids, paths


def ensure_series(n: int) -> Series:
    """Generate the series once per slice count; later runs reuse bench/out/ct-<n>/."""
    folder = OUT / f"ct-{n}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        paths = tuple(folder / p for p in m["files"])
        if len(paths) == n and all(p.exists() for p in paths):
            return Series(
                m["study_uid"],
                m["series_uid"],
                tuple(m["sop_uids"]),
                paths,
                sum(p.stat().st_size for p in paths),
                m["generator"],
            )
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        from core.synthetic.chest_ct import make_chest_ct, write_ct_series

        phantom = make_chest_ct(seed=20260101, slices=n, rows=512, cols=512)
        written = write_ct_series(
            phantom, folder, patient_id="BENCH-MOVE", patient_name="Bench^Move"
        )
        study, series = written.study_instance_uid, written.series_instance_uid
        sop_uids, paths = list(written.sop_instance_uids), list(written.paths)
        generator = "core.synthetic.chest_ct"
    except Exception as exc:  # the generator is someone else's work in progress
        print(f"core.synthetic.chest_ct unusable ({exc!r}); writing plain slices instead")
        for p in folder.glob("*.dcm"):
            p.unlink()
        study, series, sop_uids, paths = _write_fallback(n, folder)
        generator = "bench fallback (pydicom)"
    manifest.write_text(
        json.dumps(
            {
                "study_uid": study,
                "series_uid": series,
                "sop_uids": sop_uids,
                "files": [p.name for p in paths],
                "generator": generator,
            }
        )
    )
    print(f"generated {n} slices with {generator} in {time.perf_counter() - t0:.1f} s")
    return ensure_series(n)


# -- peers -----------------------------------------------------------------------------------
@dataclass
class Ports:
    loupe: int = field(default_factory=free_port)
    dcmtk: int = field(default_factory=free_port)
    movescu: int = field(default_factory=free_port)


def start_orthanc(workdir: Path, ports: Ports, extra: dict[str, Any]) -> Orthanc:
    orthanc = Orthanc(
        workdir=workdir,
        aet=ORTHANC_AET,
        modalities={
            "loupe": (LOUPE_AET, "127.0.0.1", ports.loupe),
            "dcmtk": (DCMTK_AET, "127.0.0.1", ports.dcmtk),
            "movescu": (MOVESCU_AET, "127.0.0.1", ports.movescu),
        },
        extra_config=extra,
    )
    return orthanc.start()  # peer_env(): TCP_NODELAY=1; config: MaximumPduLength 131072


def orthanc_pid(orthanc: Orthanc) -> int:
    assert orthanc.proc is not None
    return orthanc.proc.pid


def _wait_for_scp(port: int, scp: subprocess.Popen[bytes], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if scp.poll() is not None:
            raise RuntimeError(f"storescp exited early with {scp.returncode}")
        rc = subprocess.run(
            ["echoscu", "-aec", DCMTK_AET, "-to", "2", "127.0.0.1", str(port)],
            env=peer_env(),
            capture_output=True,
        ).returncode
        if rc == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("storescp did not answer C-ECHO")


# -- one run each ----------------------------------------------------------------------------
@dataclass
class RunResult:
    side: str
    variant: str
    seconds: float
    mb_per_s: float
    received: int
    retrieve_seconds: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def timed_moves(spans: list[tuple[float, float]]) -> Iterator[None]:
    """Record the wall span of every `_move` call retrieve() makes (association .. release)."""
    inner = retrieve_mod._move

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spans.append((t0, time.perf_counter()))

    retrieve_mod._move = wrapper  # type: ignore[assignment]
    try:
        yield
    finally:
        retrieve_mod._move = inner  # type: ignore[assignment]


def run_loupe(
    series: Series,
    orthanc: Orthanc,
    ports: Ports,
    workdir: Path,
    variant: str,
    profile_to: Path | None = None,
) -> RunResult:
    shutil.rmtree(workdir, ignore_errors=True)
    archive = LocalArchive(workdir)
    fast_store, streams, pynetdicom_move = VARIANTS[variant]
    retrieve_mod.PYNETDICOM_MOVE = pynetdicom_move
    local = LocalNode(
        ae_title=LOUPE_AET,
        port=ports.loupe,
        bind="127.0.0.1",
        allowed_callers=(ORTHANC_AET,),
        fast_store=fast_store,
    )
    node = RemoteNode(
        name="pacs",
        ae_title=ORTHANC_AET,
        host="127.0.0.1",
        port=orthanc.dicom_port,
        retrieve=RetrieveMethod.MOVE,
        move_streams=streams,
    )
    spans: list[tuple[float, float]] = []
    server = StorageServer(archive, local, node_for_ae=lambda _ae: "pacs")
    server.start()
    prof = cProfile.Profile() if profile_to else None
    try:
        with timed_moves(spans):
            if prof:
                prof.enable()
            cpu0, o_cpu0 = _self_cpu(), _proc_cpu(orthanc_pid(orthanc))
            t0 = time.perf_counter()
            result = retrieve_mod.retrieve(
                local,
                node,
                archive,
                study_instance_uid=series.study_uid,
                series_instance_uid=series.series_uid,
                method=RetrieveMethod.MOVE,
                allow_fallback=False,
            )
            total = time.perf_counter() - t0
            cpu, o_cpu = _self_cpu() - cpu0, _proc_cpu(orthanc_pid(orthanc)) - o_cpu0
            if prof:
                prof.disable()
    finally:
        server.stop()
    if prof and profile_to:
        prof.dump_stats(str(profile_to))
    n = len(series.sop_uids)
    stored = archive.instance_count()
    counters = server.counters
    archive.close()
    if stored != n or result.present != n or result.missing or counters.refused:
        raise SystemExit(
            f"Loupe run incomplete: {stored} indexed, present={result.present}, "
            f"missing={result.missing}, refused={counters.refused}, expected {n}"
        )
    on_disk = sum(1 for _ in (workdir / "files").rglob("*.dcm"))
    if on_disk != n:
        raise SystemExit(f"Loupe run incomplete: {on_disk} files on disk, expected {n}")
    move_s = max(b for _, b in spans) - min(a for a, _ in spans)
    return RunResult(
        side="loupe",
        variant=variant,
        seconds=move_s,
        mb_per_s=series.total_bytes / 1e6 / move_s,
        received=stored,
        retrieve_seconds=total,
        detail={
            "moves": len(spans),
            "bytes_received": result.bytes_received,
            "cpu_s_loupe": round(cpu, 3),
            "cpu_s_orthanc": round(o_cpu, 3),
            "threads_after": threading.active_count(),
        },
    )


def run_dcmtk(series: Series, orthanc: Orthanc, ports: Ports, workdir: Path) -> RunResult:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    files = workdir / "files"
    files.mkdir()
    with open(workdir / "storescp.log", "wb") as log:
        scp = subprocess.Popen(
            ["storescp", "-aet", DCMTK_AET, "-pdu", str(PDU), "-od", str(files), str(ports.dcmtk)],
            env=peer_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_scp(ports.dcmtk, scp)
        cmd = [
            "movescu",
            "-S",
            "-aet",
            MOVESCU_AET,
            "-aec",
            ORTHANC_AET,
            "-aem",
            DCMTK_AET,
            "-pdu",
            str(PDU),
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={series.study_uid}",
            "-k",
            f"SeriesInstanceUID={series.series_uid}",
            "127.0.0.1",
            str(orthanc.dicom_port),
        ]
        o_cpu0, s_cpu0 = _proc_cpu(orthanc_pid(orthanc)), _proc_cpu(scp.pid)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=peer_env(), capture_output=True)
        seconds = time.perf_counter() - t0
        o_cpu, s_cpu = _proc_cpu(orthanc_pid(orthanc)) - o_cpu0, _proc_cpu(scp.pid) - s_cpu0
    finally:
        scp.terminate()
        try:
            scp.wait(timeout=10)
        except subprocess.TimeoutExpired:
            scp.kill()
            scp.wait()
    if proc.returncode != 0:
        raise SystemExit(
            f"movescu failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    n = len(series.sop_uids)
    received = sum(1 for p in files.iterdir() if p.is_file())
    if received != n:
        raise SystemExit(f"DCMTK run incomplete: storescp wrote {received} files, expected {n}")
    return RunResult(
        side="dcmtk",
        variant="storescp",
        seconds=seconds,
        mb_per_s=series.total_bytes / 1e6 / seconds,
        received=received,
        detail={"cpu_s_storescp": round(s_cpu, 3), "cpu_s_orthanc": round(o_cpu, 3)},
    )


# -- main ------------------------------------------------------------------------------------
def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over `interval` (other people's tests share this machine)."""

    def snap() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + f[4]
        return sum(f) - idle, sum(f)

    b0, t0 = snap()
    time.sleep(interval)
    b1, t1 = snap()
    return (b1 - b0) / max(1, t1 - t0)


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most `max_wait` s) until the machine is nearly idle; return the busy fraction."""
    deadline = time.monotonic() + max_wait
    busy = _cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = _cpu_busy()
    return busy


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3, help="measured runs per side (>= 3)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured runs per side first")
    ap.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        help="Loupe variant(s) to measure (default: current); each alternates with DCMTK",
    )
    ap.add_argument("--no-dcmtk", action="store_true", help="skip the DCMTK side (profiling)")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the calling thread (C-FIND, C-MOVE SCU) in the last Loupe run of each "
        "variant into bench/out/profile-<variant>.pstats",
    )
    ap.add_argument("--orthanc-threads", type=int, default=None, help="DicomThreadsCount")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent folder for Orthanc's storage and the receivers' folders "
        "(default bench/out; creating files under /work costs ~0.4 ms each on some machines)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each run, wait up to this many seconds for the CPUs to be idle "
        "(other test suites may share the machine); the busy fraction is recorded",
    )
    ap.add_argument("--json", type=Path, default=OUT / "move_throughput.json")
    args = ap.parse_args(argv)
    variants: list[str] = args.variant or ["current"]

    for tool in ("Orthanc", "storescp", "movescu", "echoscu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y orthanc dcmtk")
    OUT.mkdir(parents=True, exist_ok=True)
    series = ensure_series(args.slices)
    mb = series.total_bytes / 1e6
    print(f"series: {len(series.sop_uids)} instances, {mb:.1f} MB ({series.generator})")

    ports = Ports()
    work = (args.workdir or OUT) / f"move-{os.getpid()}"
    extra: dict[str, Any] = {}
    if args.orthanc_threads:
        extra["DicomThreadsCount"] = args.orthanc_threads
    orthanc = start_orthanc(work / "orthanc", ports, extra)
    results: list[RunResult] = []
    try:
        t0 = time.perf_counter()
        orthanc.upload(list(series.paths))
        print(f"uploaded to Orthanc in {time.perf_counter() - t0:.1f} s")
        sides: list[tuple[str, Callable[[int, bool], RunResult]]] = []
        for v in variants:

            def loupe(i: int, last: bool, v: str = v) -> RunResult:
                prof = OUT / f"profile-{v}.pstats" if args.profile and last else None
                return run_loupe(series, orthanc, ports, work / f"loupe-{v}-{i}", v, prof)

            sides.append((f"loupe:{v}", loupe))
        if not args.no_dcmtk:
            sides.append(
                ("dcmtk", lambda i, last: run_dcmtk(series, orthanc, ports, work / f"dcmtk-{i}"))
            )
        total = args.warmup + args.runs
        for i in range(total):
            for name, fn in sides:
                os.sync()  # start every run with no dirty pages from the previous one
                busy = wait_for_quiet(args.quiet_wait)
                r = fn(i, i == total - 1)
                r.detail["machine_busy_before"] = round(busy, 2)
                measured = i >= args.warmup
                if measured:
                    results.append(r)
                cpu = ", ".join(
                    f"{k[6:]} {v:.2f}" for k, v in r.detail.items() if k[:6] == "cpu_s_"
                )
                extra_s = f"  CPU s: {cpu}"
                if r.retrieve_seconds is not None:
                    extra_s += (
                        f"; retrieve() total {r.retrieve_seconds:.3f} s, "
                        f"{r.detail.get('moves')} move(s)"
                    )
                tag = "run" if measured else "warm-up"
                print(
                    f"{tag} {i - args.warmup + 1 if measured else i + 1}: {name:<22} "
                    f"{r.seconds:7.3f} s  {r.mb_per_s:7.1f} MB/s{extra_s}",
                    flush=True,
                )
                # Keep the disk small: each run writes ~the series size.
                shutil.rmtree(work / f"loupe-{r.variant}-{i}", ignore_errors=True)
                shutil.rmtree(work / f"dcmtk-{i}", ignore_errors=True)
    finally:
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)

    summary: dict[str, Any] = {
        "slices": len(series.sop_uids),
        "megabytes": round(mb, 3),
        "generator": series.generator,
        "runs": args.runs,
        "warmup": args.warmup,
        "orthanc_extra_config": extra,
        "workdir": str(work.parent),
        "results": [r.__dict__ for r in results],
        "median_mb_per_s": {},
    }
    dcmtk = [r.mb_per_s for r in results if r.side == "dcmtk"]
    med_d = _median(dcmtk)
    print()
    if dcmtk:
        print(f"median DCMTK storescp            {med_d:7.1f} MB/s")
        summary["median_mb_per_s"]["dcmtk"] = med_d
    for v in variants:
        loupe = [r.mb_per_s for r in results if r.side == "loupe" and r.variant == v]
        full = [
            series.total_bytes / 1e6 / r.retrieve_seconds
            for r in results
            if r.side == "loupe" and r.variant == v and r.retrieve_seconds
        ]
        med_l = _median(loupe)
        summary["median_mb_per_s"][f"loupe:{v}"] = med_l
        summary["median_mb_per_s"][f"loupe:{v}:retrieve_total"] = _median(full)
        ratio = med_l / med_d if dcmtk else float("nan")
        summary.setdefault("ratio_loupe_over_dcmtk", {})[v] = ratio
        print(
            f"median Loupe {v:<20}{med_l:7.1f} MB/s  (whole retrieve(): {_median(full):.1f} MB/s)"
            f"  ratio Loupe/DCMTK = {ratio:.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
