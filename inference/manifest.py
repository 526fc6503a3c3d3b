"""Model manifest: the JSON beside each `.onnx` saying what the model is, what it applies to,
how to feed it and how to decode it. Validated field by field; errors name the field."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import ManifestError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
DTYPES = ("float32", "float16", "int64", "uint8")


class Task(enum.StrEnum):
    DETECTION_3D_HEATMAP = "detection-3d-heatmap"  # CT: centre heatmap, peaks -> findings
    FRAME_CLASSIFICATION_CAM = "frame-classification-cam"  # frames: probability + CAM
    DETECTION_3D_BOXES = "detection-3d-boxes"  # reserved: box regression heads
    SEGMENTATION_3D = "segmentation-3d"  # reserved: voxel labels (SEG)
    SEGMENTATION_2D = "segmentation-2d"  # reserved: frame masks


SUPPORTED_TASKS = (Task.DETECTION_3D_HEATMAP, Task.FRAME_CLASSIFICATION_CAM)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # fixed shapes: the runtime pads to them
    dtype: str


@dataclass(frozen=True)
class Code:
    scheme: str  # coding scheme designator, e.g. SCT
    value: str
    meaning: str


@dataclass(frozen=True)
class Label:
    name: str
    code: Code


@dataclass(frozen=True)
class AppliesTo:
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]  # upper case; empty tuple = any; "" accepts a missing value
    slice_spacing_mm: tuple[float, float] | None  # CT only
    pixel_spacing_mm: tuple[float, float] | None  # CT only
    min_slices: int  # CT only; 0 for frames


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    data: str  # which data the figure came from


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on the model's probability with what it achieved on validation data.

    CT detection models give `false_positives_per_scan`; frame classifiers `specificity`.
    """

    name: str
    threshold: float
    sensitivity: float
    false_positives_per_scan: float | None = None
    specificity: float | None = None
    data: str = ""  # which data the figures came from
    default: bool = False

    def describe(self) -> str:
        """E.g. "'balanced' (p >= 0.52; 0.90 sensitivity at 1 FP/scan on validation)"."""
        if self.false_positives_per_scan is not None:
            fp = f"{self.false_positives_per_scan:.2g} FP/scan"
        elif self.specificity is not None:
            fp = f"{self.specificity:.2f} specificity"
        else:
            fp = "no false-positive figure"
        return (
            f"'{self.name}' (p >= {self.threshold:.2f}; {self.sensitivity:.2f} sensitivity "
            f"at {fp} on validation)"
        )

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "threshold": round(self.threshold, 4),
            "sensitivity": round(self.sensitivity, 4),
        }
        if self.false_positives_per_scan is not None:
            d["false_positives_per_scan"] = round(self.false_positives_per_scan, 4)
        if self.specificity is not None:
            d["specificity"] = round(self.specificity, 4)
        if self.data:
            d["data"] = self.data
        if self.default:
            d["default"] = True
        return d


@dataclass(frozen=True)
class Manifest:
    id: str
    version: str
    name: str
    manufacturer: str
    task: Task
    file: str
    sha256: str
    applies_to: AppliesTo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Mapping[str, Any]
    decoding: Mapping[str, Any]
    labels: tuple[Label, ...]
    intended_use: str
    limitations: tuple[str, ...]
    validation: tuple[Metric, ...]
    providers: tuple[str, ...]
    directory: Path
    operating_points: tuple[OperatingPoint, ...] = ()

    @property
    def model_path(self) -> Path:
        return self.directory / self.file

    @property
    def candidate_threshold(self) -> float:
        """The lowest probability the decoder keeps (every candidate, for FROC)."""
        key = "threshold" if self.task is Task.DETECTION_3D_HEATMAP else "lesion_threshold"
        return float(self.decoding[key])

    @property
    def default_operating_point(self) -> OperatingPoint:
        """The declared default; a manifest without operating points gets one at its
        decoding threshold, named 'manifest threshold' (no validated figures)."""
        for op in self.operating_points:
            if op.default:
                return op
        return OperatingPoint(
            name="manifest threshold",
            threshold=self.candidate_threshold,
            sensitivity=float("nan"),
            data="no operating points declared in the manifest",
            default=True,
        )

    def operating_point(self, name: str) -> OperatingPoint:
        for op in self.operating_points:
            if op.name == name:
                return op
        known = ", ".join(op.name for op in self.operating_points) or "none declared"
        raise ManifestError(f"model {self.id} has no operating point {name!r} ({known})")

    def pre(self, key: str) -> Any:
        return self.preprocessing[key]

    def dec(self, key: str) -> Any:
        return self.decoding[key]


# Required preprocessing/decoding keys per task, with their kind.
_PRE_KEYS: dict[Task, dict[str, str]] = {
    Task.DETECTION_3D_HEATMAP: {
        "spacing_mm": "positive3",
        "orientation": "str",
        "window_hu": "range",
        "normalisation": "str",
        "patch_size": "int3",
        "overlap": "fraction",
        "blending": "str",
        "output_stride": "posint",
    },
    Task.FRAME_CLASSIFICATION_CAM: {
        "input_size": "int2",
        "channel_order": "str",
        "mean": "number",
        "std": "positive",
        "batch": "posint",
    },
}
_DEC_KEYS: dict[Task, dict[str, str]] = {
    Task.DETECTION_3D_HEATMAP: {
        "threshold": "fraction",
        "nms_radius_mm": "positive",
        "max_findings": "posint",
        "min_diameter_mm": "number",
    },
    Task.FRAME_CLASSIFICATION_CAM: {
        "informative_threshold": "fraction",
        "lesion_threshold": "fraction",
        "region_fraction": "fraction",
    },
}


def _need(d: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise ManifestError(f"{where or 'manifest'} must be an object")
    if key not in d:
        raise ManifestError(f"{where + '.' if where else ''}{key} is missing")
    return d[key]


def _str(v: Any, field: str, empty_ok: bool = False) -> str:
    if not isinstance(v, str) or (not empty_ok and not v.strip()):
        raise ManifestError(f"{field} must be a non-empty string, not {v!r}")
    return v


def _num(v: Any, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ManifestError(f"{field} must be a number, not {v!r}")
    return float(v)


def _check_kind(v: Any, kind: str, field: str) -> Any:
    if kind == "str":
        return _str(v, field)
    if kind == "number":
        return _num(v, field)
    if kind == "positive":
        if _num(v, field) <= 0:
            raise ManifestError(f"{field} must be > 0, not {v!r}")
        return float(v)
    if kind == "fraction":
        if not 0.0 <= _num(v, field) < 1.0:
            raise ManifestError(f"{field} must be in [0, 1), not {v!r}")
        return float(v)
    if kind == "posint":
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ManifestError(f"{field} must be a positive integer, not {v!r}")
        return v
    if kind in ("int2", "int3", "positive3", "range"):
        n = {"int2": 2, "int3": 3, "positive3": 3, "range": 2}[kind]
        if not isinstance(v, list) or len(v) != n:
            raise ManifestError(f"{field} must be a list of {n} numbers, not {v!r}")
        vals = [_num(x, field) for x in v]
        if kind in ("int2", "int3") and any(
            isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in v
        ):
            raise ManifestError(f"{field} must be {n} positive integers, not {v!r}")
        if kind == "positive3" and any(x <= 0 for x in vals):
            raise ManifestError(f"{field} must be {n} positive numbers, not {v!r}")
        if kind == "range" and not vals[0] < vals[1]:
            raise ManifestError(f"{field} must be [low, high] with low < high, not {v!r}")
        return tuple(vals) if kind in ("positive3", "range") else tuple(v)
    raise AssertionError(kind)


def _tensors(v: Any, field: str) -> tuple[TensorSpec, ...]:
    if not isinstance(v, list) or not v:
        raise ManifestError(f"{field} must be a non-empty list")
    out = []
    for n, t in enumerate(v):
        where = f"{field}[{n}]"
        name = _str(_need(t, "name", where), f"{where}.name")
        shape = _need(t, "shape", where)
        if (
            not isinstance(shape, list)
            or not shape
            or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape)
        ):
            raise ManifestError(f"{where}.shape must be a list of positive integers, not {shape!r}")
        dtype = _need(t, "dtype", where)
        if dtype not in DTYPES:
            raise ManifestError(f"{where}.dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        out.append(TensorSpec(name, tuple(shape), dtype))
    return tuple(out)


def _range_or_none(v: Any, field: str) -> tuple[float, float] | None:
    if v is None:
        return None
    r = _check_kind(v, "range", field)
    if r[0] <= 0:
        raise ManifestError(f"{field} must be positive, not {v!r}")
    return (float(r[0]), float(r[1]))


def _operating_points(v: Any, task: Task) -> tuple[OperatingPoint, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise ManifestError("operating_points must be a list")
    out: list[OperatingPoint] = []
    for n, op in enumerate(v):
        where = f"operating_points[{n}]"
        name = _str(_need(op, "name", where), f"{where}.name")
        thr = _num(_need(op, "threshold", where), f"{where}.threshold")
        if not 0.0 <= thr <= 1.0:
            raise ManifestError(f"{where}.threshold must be in [0, 1], not {thr!r}")
        sens = _num(_need(op, "sensitivity", where), f"{where}.sensitivity")
        fp = op.get("false_positives_per_scan")
        spec = op.get("specificity")
        if task is Task.DETECTION_3D_HEATMAP and fp is None:
            raise ManifestError(f"{where}.false_positives_per_scan is missing")
        if task is Task.FRAME_CLASSIFICATION_CAM and spec is None:
            raise ManifestError(f"{where}.specificity is missing")
        default = op.get("default", False)
        if not isinstance(default, bool):
            raise ManifestError(f"{where}.default must be true or false, not {default!r}")
        out.append(
            OperatingPoint(
                name=name,
                threshold=thr,
                sensitivity=sens,
                false_positives_per_scan=(
                    None if fp is None else _num(fp, f"{where}.false_positives_per_scan")
                ),
                specificity=None if spec is None else _num(spec, f"{where}.specificity"),
                data=str(op.get("data", "")),
                default=default,
            )
        )
    if out and sum(op.default for op in out) != 1:
        raise ManifestError('operating_points: exactly one must have "default": true')
    if len({op.name for op in out}) != len(out):
        raise ManifestError("operating_points: names must be unique")
    return tuple(out)


def parse_manifest(data: Any, directory: Path) -> Manifest:
    """Validate a manifest's JSON content; raises ManifestError naming the first bad field."""
    if not isinstance(data, dict):
        raise ManifestError("manifest must be a JSON object")
    schema = _need(data, "schema", "")
    if schema != SCHEMA_VERSION:
        raise ManifestError(f"schema must be {SCHEMA_VERSION}, not {schema!r}")
    mid = _str(_need(data, "id", ""), "id")
    if not all(c.isalnum() or c in "-_." for c in mid):
        raise ManifestError(f"id may hold letters, digits, '-', '_' and '.', not {mid!r}")
    task_raw = _need(data, "task", "")
    try:
        task = Task(task_raw)
    except ValueError:
        raise ManifestError(
            f"task must be one of {', '.join(t.value for t in Task)}, not {task_raw!r}"
        ) from None
    if task not in SUPPORTED_TASKS:
        raise ManifestError(f"task {task.value!r} is declared but not yet run by this engine")
    sha = _str(_need(data, "sha256", ""), "sha256").lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"sha256 must be 64 hex digits, not {sha!r}")
    file = _str(_need(data, "file", ""), "file")
    if "/" in file or "\\" in file or file.startswith("."):
        raise ManifestError(f"file must be a plain file name beside the manifest, not {file!r}")

    at = _need(data, "applies_to", "")
    mods = _need(at, "modality", "applies_to")
    if not isinstance(mods, list) or not mods or not all(isinstance(m, str) and m for m in mods):
        raise ManifestError(
            f"applies_to.modality must be a non-empty list of strings, not {mods!r}"
        )
    parts = at.get("body_part", [])
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise ManifestError(f"applies_to.body_part must be a list of strings, not {parts!r}")
    min_slices = at.get("min_slices", 0)
    if isinstance(min_slices, bool) or not isinstance(min_slices, int) or min_slices < 0:
        raise ManifestError(f"applies_to.min_slices must be an integer >= 0, not {min_slices!r}")
    applies = AppliesTo(
        modalities=tuple(m.upper() for m in mods),
        body_parts=tuple(p.upper() for p in parts),
        slice_spacing_mm=_range_or_none(at.get("slice_spacing_mm"), "applies_to.slice_spacing_mm"),
        pixel_spacing_mm=_range_or_none(at.get("pixel_spacing_mm"), "applies_to.pixel_spacing_mm"),
        min_slices=min_slices,
    )

    pre_raw = _need(data, "preprocessing", "")
    pre = {
        k: _check_kind(_need(pre_raw, k, "preprocessing"), kind, f"preprocessing.{k}")
        for k, kind in _PRE_KEYS[task].items()
    }
    pre = {**pre_raw, **pre}
    dec_raw = _need(data, "decoding", "")
    dec = {
        k: _check_kind(_need(dec_raw, k, "decoding"), kind, f"decoding.{k}")
        for k, kind in _DEC_KEYS[task].items()
    }
    dec = {**dec_raw, **dec}

    labels = []
    raw_labels = _need(data, "labels", "")
    if not isinstance(raw_labels, list) or not raw_labels:
        raise ManifestError("labels must be a non-empty list")
    for n, lab in enumerate(raw_labels):
        where = f"labels[{n}]"
        code = _need(lab, "code", where)
        labels.append(
            Label(
                name=_str(_need(lab, "name", where), f"{where}.name"),
                code=Code(
                    scheme=_str(_need(code, "scheme", f"{where}.code"), f"{where}.code.scheme"),
                    value=_str(_need(code, "value", f"{where}.code"), f"{where}.code.value"),
                    meaning=_str(_need(code, "meaning", f"{where}.code"), f"{where}.code.meaning"),
                ),
            )
        )
    limitations = _need(data, "limitations", "")
    if not isinstance(limitations, list) or not all(isinstance(s, str) for s in limitations):
        raise ManifestError("limitations must be a list of strings")
    metrics = []
    raw_val = _need(data, "validation", "")
    if not isinstance(raw_val, list):
        raise ManifestError("validation must be a list")
    for n, m in enumerate(raw_val):
        where = f"validation[{n}]"
        metrics.append(
            Metric(
                name=_str(_need(m, "metric", where), f"{where}.metric"),
                value=_num(_need(m, "value", where), f"{where}.value"),
                data=_str(_need(m, "data", where), f"{where}.data"),
            )
        )
    providers = _need(data, "providers", "")
    if not isinstance(providers, list) or not providers:
        raise ManifestError("providers must be a non-empty list")
    for p in providers:
        if p not in KNOWN_PROVIDERS:
            raise ManifestError(
                f"providers: unknown provider {p!r} (known: {', '.join(KNOWN_PROVIDERS)})"
            )
    return Manifest(
        id=mid,
        version=_str(_need(data, "version", ""), "version"),
        name=_str(data.get("name", mid), "name"),
        manufacturer=_str(data.get("manufacturer", "Loupe"), "manufacturer"),
        task=task,
        file=file,
        sha256=sha,
        applies_to=applies,
        inputs=_tensors(_need(data, "inputs", ""), "inputs"),
        outputs=_tensors(_need(data, "outputs", ""), "outputs"),
        preprocessing=pre,
        decoding=dec,
        labels=tuple(labels),
        intended_use=_str(_need(data, "intended_use", ""), "intended_use"),
        limitations=tuple(limitations),
        validation=tuple(metrics),
        providers=tuple(providers),
        directory=directory,
        operating_points=_operating_points(data.get("operating_points"), task),
    )


def load_manifest(directory: Path) -> Manifest:
    """Read and validate `<directory>/manifest.json`."""
    path = Path(directory) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse_manifest(data, Path(directory))
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_model_file(manifest: Manifest) -> None:
    """Refuse a model whose file is missing or whose sha256 differs from the manifest's."""
    path = manifest.model_path
    if not path.is_file():
        raise ManifestError(f"model {manifest.id}: file {path} is missing")
    digest = file_sha256(path)
    if digest != manifest.sha256:
        raise ManifestError(
            f"model {manifest.id} {manifest.version}: sha256 of {path.name} is {digest}, "
            f"the manifest says {manifest.sha256}; the file was altered or replaced, refused"
        )
