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
    "version": "2.1.0",
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
        # Since 2.0: whole voxels averaged in blocks before the linear resampling, so every
        # scanner's data reach the model at about the same resolution and noise.
        "antialias": True,
        "window_hu": [-1000.0, 400.0],
        "normalisation": "window-to-unit",
        "patch_size": [64, 64, 64],
        "overlap": 0.25,
        "blending": "gaussian",
        "gaussian_sigma_scale": 0.125,
        "output_stride": 2,
        "lung_mask": (
            "inference.lung_segmentation: body, airways grown from the trachea, lungs closed "
            "10 mm, on a 4 mm grid; patches where lungs + 10 mm are, candidates and heatmap "
            "in lungs + decoding.pleural_margin_mm"
        ),
        # Test-time augmentation: outputs averaged over the patch, its left-right and its
        # front-back flip (3 runs per patch). Chosen on validation seeds 700000+.
        "test_time_flips": ["x", "y"],
    },
    "decoding": {
        # The candidate threshold (every candidate, `--all-candidates`); the workstation
        # shows findings at the default operating point. On calibrated probabilities: the
        # calibration is steep (2.0.0: calibrated 1e-6 is the network's 0.015, as low as
        # training/validate_nodule.py's FROC goes).
        "threshold": 1e-6,
        "pleural_margin_mm": 6.0,
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
        "Validated on a second, independently written phantom style "
        "(core.synthetic.validation_ct): see MODEL_CARD.md for the gap between the styles.",
        "Nodules below 4 mm were rare in training; above 30 mm absent.",
        "Paediatric and post-operative lungs, metal and streak artefacts untested.",
    ],
    "validation": [],
    "providers": PROVIDERS,
}

ENDOSCOPY: dict[str, Any] = {
    "schema": 1,
    "id": "endoscopy-lesion-ref",
    "version": "2.0.0",
    "name": "Loupe reference oesophagus lesion frame classifier (synthetic)",
    "manufacturer": "Loupe",
    "task": "frame-classification-cam",
    "file": "model.onnx",
    "applies_to": {"modality": ["ES"], "body_part": ["ESOPHAGUS", ""], "min_slices": 0},
    "inputs": [{"name": "frame", "shape": [8, 3, 128, 128], "dtype": "float32"}],
    "outputs": [
        {"name": "informative_probability", "shape": [8, 1], "dtype": "float32"},
        {"name": "lesion_probability", "shape": [8, 1], "dtype": "float32"},
        {"name": "features", "shape": [8, 96, 16, 16], "dtype": "float32"},
        {"name": "cam_weights", "shape": [1, 96], "dtype": "float32"},
        {"name": "cam_bias", "shape": [1, 1], "dtype": "float32"},
    ],
    "preprocessing": {
        "input_size": [128, 128],
        # Since 2.0: the frame is cropped to the endoscope's field of view and what lies
        # outside it (the black mask, burned-in text) is blanked (inference.field_of_view).
        "field_of_view": "crop-and-blank",
        "resize": "area",
        "channel_order": "RGB",
        "mean": 0.5,
        "std": 0.25,
        "batch": 8,
    },
    "decoding": {
        # training/evaluate_endoscopy.py sets the thresholds and the region fraction on
        # style-A validation frames and records the calibration here.
        "informative_threshold": 0.5,
        "lesion_threshold": 0.5,
        "region_fraction": 0.6,
        "cam": (
            "cam_weights . features + cam_bias per 8-pixel cell of the field-of-view crop, "
            "min-max scaled over the field of view to [0, lesion_probability], 0 outside it"
        ),
    },
    "labels": [
        {"name": "lesion", "code": {"scheme": "SCT", "value": "52988006", "meaning": "Lesion"}}
    ],
    "intended_use": (
        "Demonstration and pipeline validation only: scores every oesophagoscopy frame for "
        "a lesion with a heatmap, flags uninformative frames and ranks the rest. Trained on "
        "synthetic frames; NOT for clinical use."
    ),
    "limitations": [
        "Trained only on synthetic frames (core.synthetic.endoscopy_domain); never seen a real "
        "endoscope.",
        "Lesion types, NBI/chromoendoscopy and stomach or duodenum lesions are not modelled.",
        "The CAM region is coarse (8-pixel cells at 128x128 input over the field of view).",
        "Lesion AUC falls from 0.95 (style A) to 0.84 on an independently written renderer "
        "(style B); expect a larger drop on real frames.",
        "Stage 1 (informative frame) does not transfer to style B: treat it as advisory; every "
        "frame is scored regardless.",
    ],
    "validation": [],
    "providers": PROVIDERS,
}


def write_manifest(
    model_dir: Path,
    template: dict[str, Any],
    metrics: list[dict[str, Any]],
    operating_points: list[dict[str, Any]] | None = None,
) -> None:
    data = dict(template)
    data["sha256"] = file_sha256(model_dir / data["file"])
    data["validation"] = metrics
    if operating_points:
        data["operating_points"] = operating_points
    (model_dir / "manifest.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    load_manifest(model_dir)  # the written manifest must validate
