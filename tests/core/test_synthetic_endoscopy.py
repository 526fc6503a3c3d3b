"""The endoscopy training style A (domain-randomised) and the validation-only style B: truth
that matches the pixels, the variety style A promises, and B kept apart from training."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from core.synthetic.endoscopy_domain import (
    FRAME_SIZES,
    make_randomised_frame,
    random_frame_size,
    randomised_plan,
)
from core.synthetic.endoscopy_validation import (
    VALIDATION_SIZES,
    make_validation_frame,
    validation_plan,
)
from inference.field_of_view import detect_field_of_view

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_style_a_is_deterministic_and_its_truth_matches() -> None:
    img, truth = make_randomised_frame(seed=7, lesion=True, rows=240, cols=320)
    again, truth2 = make_randomised_frame(seed=7, lesion=True, rows=240, cols=320)
    np.testing.assert_array_equal(img, again)
    assert truth == truth2 and truth.lesion and truth.informative
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    plain, t3 = make_randomised_frame(seed=7, lesion=False, rows=240, cols=320)
    assert not t3.lesion and t3.lesion_box is None
    assert not np.array_equal(plain, img)


def test_style_a_varies_what_a_capture_chain_varies() -> None:
    rng = np.random.default_rng(0)
    sizes = {random_frame_size(rng) for _ in range(200)}
    assert sizes == set(FRAME_SIZES)  # 576x768, 480x640, 1080x1350, square ... all drawn
    assert max(random_frame_size(rng, 300)) <= 300
    shapes, full_frames, bordered, edge_lesions, lesions = set(), 0, 0, 0, 0
    for seed in range(40):
        img, t = make_randomised_frame(seed=seed, lesion=seed % 2 == 0, max_side=256)
        shapes.add(round(img.shape[1] / img.shape[0], 2))
        fov = detect_field_of_view(img)
        full_frames += fov.full_frame
        bordered += not fov.full_frame
        if t.lesion_box is None:
            continue
        lesions += 1
        r0, c0, r1, c1 = t.lesion_box
        assert 0 <= r0 < r1 <= img.shape[0] and 0 <= c0 < c1 <= img.shape[1]
        # The lesion is in the lit field, not on the black mask.
        assert img[r0:r1, c0:c1].max(axis=2).mean() > 40
        # Near the field's edge: the box reaches within 10 % of the field size of outside.
        s = fov.step
        grown = np.zeros_like(fov.mask)
        pad = max(1, round(0.1 * fov.mask.shape[0]))
        grown[
            max(0, r0 // s - pad) : r1 // s + pad + 1, max(0, c0 // s - pad) : c1 // s + pad + 1
        ] = 1
        edge_lesions += bool((grown & ~fov.mask).any())
    assert len(shapes) >= 3  # 4:3, 5:4, square, 16:9 ...
    assert full_frames >= 2 and bordered >= 20
    assert lesions >= 18 and edge_lesions >= 3


def test_style_a_plan() -> None:
    plan = randomised_plan(2000, 0)
    lesion = np.array([p[1] for p in plan])
    informative = np.array([p[2] for p in plan])
    assert 0.4 < lesion.mean() < 0.5
    assert 0.2 < 1 - informative.mean() < 0.3
    assert {p[0] for p in randomised_plan(10, 500_000)}.isdisjoint(p[0] for p in plan)


def test_style_b_frames_and_truth() -> None:
    img, truth = make_validation_frame(seed=3, lesion=True)
    assert img.shape[:2] in VALIDATION_SIZES and img.dtype == np.uint8
    again, truth2 = make_validation_frame(seed=3, lesion=True)
    np.testing.assert_array_equal(img, again)
    assert truth == truth2 and truth.lesion and truth.lesion_box is not None
    r0, c0, r1, c1 = truth.lesion_box
    assert img[r0:r1, c0:c1].max(axis=2).mean() > 40
    plain, t2 = make_validation_frame(seed=3, lesion=False, rows=120, cols=160)
    assert plain.shape == (120, 160, 3) and t2.lesion_box is None
    _, t3 = make_validation_frame(seed=4, lesion=False, informative=False, rows=120, cols=160)
    assert not t3.informative
    plan = validation_plan(1000, 0)
    assert 0.3 < np.mean([p[1] for p in plan]) < 0.4


def test_style_b_is_written_apart_and_never_trained_on() -> None:
    """Style B shares no rendering code with style A, and training never imports it."""
    b = _imports(ROOT / "core" / "synthetic" / "endoscopy_validation.py")
    assert not {m for m in b if m.startswith("core.")} - {"core.synthetic.endoscopy"}
    src = (ROOT / "core" / "synthetic" / "endoscopy_validation.py").read_text(encoding="utf-8")
    assert "from core.synthetic.endoscopy import EndoscopyFrameTruth\n" in src  # the type only
    for script in (ROOT / "training").glob("train_*.py"):
        assert "core.synthetic.endoscopy_validation" not in _imports(script), script
