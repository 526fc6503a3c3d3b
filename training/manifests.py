"""Manifests of the reference models, written next to model.onnx with its sha256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.manifest import file_sha256, load_manifest

PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

NODULE: dict[str, Any] = {
    "schema": 1,
    "id": "lung-nodule-ref",
    "version": "1.2.0",
    "name": "Loupe reference lung nodule detector (synthetic)",
    "manufacturer": "Loupe",
    "task": "detection-3d-heatmap",
    "file": "model.onnx",
    "applies_to": {
        "modality": ["CT"],
        "body_part": ["CHEST", "LUNG", "THORAX", ""],
        "slice_spacing_mm": [0.5, 3.0],
        "pixel_spacing_mm": [0.4, 1.6],
        "min_slices": 32,
    },
    "inputs": [{"name": "ct_patch", "shape": [1, 1, 64, 64, 64], "dtype": "float32"}],
    "outputs": [
        {"name": "nodule_probability", "shape": [1, 1, 32, 32, 32], "dtype": "float32"},
        {"name": "diameter_mm", "shape": [1, 1, 32, 32, 32], "dtype": "float32"},
        {"name": "texture_probability", "shape": [1, 3, 32, 32, 32], "dtype": "float32"},
    ],
    "preprocessing": {
        "spacing_mm": [2.0, 2.0, 2.0],
        "orientation": "LPS",
        "interpolation": "linear",
        "window_hu": [-1000.0, 400.0],
        "normalisation": "window-to-unit",
        "patch_size": [64, 64, 64],
        "overlap": 0.25,
        "blending": "gaussian",
        "gaussian_sigma_scale": 0.125,
        "output_stride": 2,
        "lung_mask": "air below -400 HU not touching the image border, 8 mm grid, dilated 16 mm",
        # Test-time augmentation: outputs averaged over the patch, its left-right and its
        # front-back flip (3 runs per patch). Chosen on validation seeds 700000+.
        "test_time_flips": ["x", "y"],
    },
    "decoding": {
        "threshold": 0.15,
        "nms_radius_mm": 10.0,
        "max_findings": 30,
        "min_diameter_mm": 0.0,
        # Since 1.1.0 trained on patches at the first/last slices: no edge margin needed.
        "edge_margin_mm": 0.0,
        "peak": "3x3x3 local maximum, probability-weighted centroid",
        "texture_labels": ["solid", "part-solid", "ground-glass"],
    },
    "labels": [
        {"name": "nodule", "code": {"scheme": "SCT", "value": "27925004", "meaning": "Nodule"}}
    ],
    "intended_use": (
        "Demonstration and pipeline validation only: shows where a 3-D detector would mark "
        "lung nodules in chest CT. Trained on synthetic phantoms; NOT for clinical use."
    ),
    "limitations": [
        "Trained only on synthetic phantoms (core.synthetic.chest_ct); never seen a real CT.",
        "Nodules below 4 mm and above 25 mm were rare or absent in training.",
        "Contrast-enhanced, paediatric, post-operative lungs and motion artefacts untested.",
    ],
    "validation": [],
    "providers": PROVIDERS,
}

ENDOSCOPY: dict[str, Any] = {
    "schema": 1,
    "id": "endoscopy-lesion-ref",
    "version": "1.0.0",
    "name": "Loupe reference oesophagus lesion frame classifier (synthetic)",
    "manufacturer": "Loupe",
    "task": "frame-classification-cam",
    "file": "model.onnx",
    "applies_to": {"modality": ["ES"], "body_part": ["ESOPHAGUS", ""], "min_slices": 0},
    "inputs": [{"name": "frame", "shape": [8, 3, 128, 128], "dtype": "float32"}],
    "outputs": [
        {"name": "informative_probability", "shape": [8, 1], "dtype": "float32"},
        {"name": "lesion_probability", "shape": [8, 1], "dtype": "float32"},
        {"name": "features", "shape": [8, 64, 16, 16], "dtype": "float32"},
        {"name": "cam_weights", "shape": [1, 64], "dtype": "float32"},
        {"name": "cam_bias", "shape": [1, 1], "dtype": "float32"},
    ],
    "preprocessing": {
        "input_size": [128, 128],
        "resize": "area",
        "channel_order": "RGB",
        "mean": 0.5,
        "std": 0.25,
        "batch": 8,
    },
    "decoding": {
        # Calibrated on 240 validation frames at 480x480 (seeds 800000+): the model was trained
        # on frames rendered at 256x256 and its stage-1 probability runs low at 480x480.
        "informative_threshold": 0.005,
        "lesion_threshold": 0.5,
        "region_fraction": 0.6,
        "cam": "sigmoid(cam_weights . features + cam_bias) per 8-pixel cell",
    },
    "labels": [
        {"name": "lesion", "code": {"scheme": "SCT", "value": "52988006", "meaning": "Lesion"}}
    ],
    "intended_use": (
        "Demonstration and pipeline validation only: drops uninformative oesophagoscopy frames "
        "and ranks the rest by lesion probability with a heatmap. Trained on synthetic frames; "
        "NOT for clinical use."
    ),
    "limitations": [
        "Trained only on synthetic frames (core.synthetic.endoscopy); never seen a real endoscope.",
        "Lesion types, NBI/chromoendoscopy and stomach or duodenum lesions are not modelled.",
        "The CAM region is coarse (8-pixel cells at 128x128 input).",
    ],
    "validation": [],
    "providers": PROVIDERS,
}


def write_manifest(
    model_dir: Path, template: dict[str, Any], metrics: list[dict[str, Any]]
) -> None:
    data = dict(template)
    data["sha256"] = file_sha256(model_dir / data["file"])
    data["validation"] = metrics
    (model_dir / "manifest.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    load_manifest(model_dir)  # the written manifest must validate
