"""Train the reference endoscopy frame model (frame quality + lesion with a CAM) on
domain-randomised synthetic oesophagoscopy frames, calibrate it and export it to ONNX.

    PYTHONPATH=. nice -n 5 .venv/bin/python training/train_endoscopy.py \\
        --out resources/models/endoscopy-lesion-ref

Training data: core.synthetic.endoscopy_domain frames ("style A") with seeds 0..N-1, frame
sizes drawn from real processors' sizes and shrunk to a longer side of at most 384 px (the
model sees a 128x128 crop of the field of view, so larger renders only cost time).
Calibration: seeds 500000+ of style A at full frame sizes, never trained on: the temperatures
of both heads are fitted there (minimum log loss) and baked into the exported graph, so
`informative_probability`, `lesion_probability` and the CAM weights it exports are already
calibrated. Style B (core.synthetic.endoscopy_validation) is never used here.

Every frame goes through the runtime's own preprocessing (inference.field_of_view and
inference.frame_preprocess): the same crop, blanking and resampling as at inference. The
model outputs the informative-frame probability (stage 1), the lesion probability (stage 2,
learnt on every frame, uninformative ones included), the last feature map and the lesion
classifier's weights and bias, so the runtime computes a class activation map without
gradients. torch is a training-only dependency.

The lesion classifier is applied to every cell of the 16x16 feature map (the CAM) and the
frame's logit is a log-sum-exp pool of the cells (between their mean and their maximum): a
small lesion in a few cells still moves the frame's score, which global average pooling
dilutes. The cells are also taught where the lesion is: cells overlapping the true lesion
box are positive, the others negative (a weight of 0.5 beside the frame loss), which speeds
learning on 1 CPU and puts the heatmap on the lesion.
"""

from __future__ import annotations

import os

# Small matrix products (the frame renderer's noise) run ~10x slower with OpenBLAS threads
# fighting over 2 cores; one thread per worker process. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.synthetic.endoscopy_domain import make_randomised_frame, randomised_plan
from inference.field_of_view import detect_field_of_view
from inference.frame_preprocess import to_model_input
from inference.roc import roc_auc

SIZE = 128
CELLS = 16  # feature map (and CAM) cells per side: 8 input pixels each
BATCH = 8  # fixed export batch: the runtime pads the last batch
MEAN, STD = 0.5, 0.25
TRAIN_MAX_SIDE = 384
CALIBRATION_SEED0 = 500_000
LSE_SHARPNESS = 4.0  # log-sum-exp pooling: 0 is the mean of the cells, infinity their max


class FrameNet(nn.Module):
    """Input standardised per frame over its field of view; six 3x3 conv layers (3 strides of
    2: 16x16 feature map at 128x128 input). Stage 1: global average pooling plus the frame's
    colour statistics, a linear head. Stage 2: a linear classifier on every cell (the CAM),
    log-sum-exp pooled into the frame's logit."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(3, 24, 2),
            block(24, 32, 2),
            block(32, 48),
            block(48, 64, 2),
            block(64, 64),
            block(64, 96),
        )
        self.informative = nn.Linear(96 + 6, 1)
        self.lesion = nn.Linear(96, 1)

    @staticmethod
    def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each channel to zero mean, unit SD over the field of view (pixels not blanked to
        black); blanked pixels to -3. Exposure, gain and colour cast vary from frame to frame
        and scope to scope; a lesion is a colour and texture *relative* to the mucosa around
        it: without this the network barely learns (train AUC 0.6 after 2000 steps; with it
        it fits 256 frames in 100). Returns the input and the removed statistics (mean and SD
        per channel, (n, 6)), which stage 1 needs: a dark frame is dark."""
        black = (0.0 - MEAN) / STD
        m = (x.amax(dim=1, keepdim=True) > black + 1e-3).float()
        count = m.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
        mean = (x * m).sum(dim=(2, 3), keepdim=True) / count
        var = (((x - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
        sd = torch.sqrt(var + 0.01)
        z = ((x - mean) / sd) * m - 3.0 * (1.0 - m)
        return z, torch.cat([mean, sd], dim=1).flatten(1)

    def cells(self, f: torch.Tensor) -> torch.Tensor:
        """Lesion logit per cell, (n, 16, 16): the CAM the runtime recomputes."""
        return torch.einsum("nchw,c->nhw", f, self.lesion.weight[0]) + self.lesion.bias[0]

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z, stats = self.standardise(x)
        f = self.features(z)
        cam = self.cells(f)
        n = cam.shape[0]
        flat = cam.reshape(n, -1) * LSE_SHARPNESS
        pooled = (torch.logsumexp(flat, dim=1) - math.log(flat.shape[1])) / LSE_SHARPNESS
        g = torch.cat([f.mean(dim=(2, 3)), stats], dim=1)
        return self.informative(g), pooled[:, None], f, cam


class ExportNet(nn.Module):
    """Probabilities divided by the fitted temperatures; CAM weights scaled the same way, so
    the CAM's mean logit stays the frame's calibrated lesion logit."""

    def __init__(self, net: FrameNet, t_informative: float, t_lesion: float) -> None:
        super().__init__()
        self.net = net
        self.t_inf = float(t_informative)
        self.t_les = float(t_lesion)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inf, les, f, _ = self.net(x)
        # Weights travel as outputs (a graph that depends on x keeps them out of constant folding).
        zero = (x[:1, :1, :1, :1] * 0.0).reshape(1, 1)
        w = self.net.lesion.weight / self.t_les + zero
        b = self.net.lesion.bias.reshape(1, 1) / self.t_les + zero
        return torch.sigmoid(inf / self.t_inf), torch.sigmoid(les / self.t_les), f, w, b


def lesion_cells(
    box: tuple[int, int, int, int] | None, crop: tuple[int, int, int, int]
) -> np.ndarray:
    """(16, 16) 0/1: the CAM cells the lesion box overlaps, on the field-of-view crop."""
    out = np.zeros((CELLS, CELLS), dtype=np.uint8)
    if box is None:
        return out
    r0, c0, r1, c1 = crop
    sy, sx = CELLS / (r1 - r0), CELLS / (c1 - c0)
    a0 = int(np.clip(np.floor((box[0] - r0) * sy), 0, CELLS - 1))
    b0 = int(np.clip(np.floor((box[1] - c0) * sx), 0, CELLS - 1))
    a1 = int(np.clip(np.ceil((box[2] - r0) * sy), a0 + 1, CELLS))
    b1 = int(np.clip(np.ceil((box[3] - c0) * sx), b0 + 1, CELLS))
    out[a0:a1, b0:b1] = 1
    return out


def _render(job: tuple[int, bool, bool, int | None]) -> tuple[np.ndarray, bool, bool, np.ndarray]:
    seed, lesion, informative, max_side = job
    img, t = make_randomised_frame(
        seed=seed, lesion=lesion, informative=informative, max_side=max_side
    )
    fov = detect_field_of_view(img)
    x = to_model_input(img, SIZE, MEAN, STD, fov)
    return x.astype(np.float16), t.informative, t.lesion, lesion_cells(t.lesion_box, fov.box)


def make_dataset(
    n: int, seed0: int, max_side: int | None, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    jobs = [(s, les, inf, max_side) for s, les, inf in randomised_plan(n, seed0)]
    with Pool(workers) as pool:
        rows = pool.map(_render, jobs, chunksize=16)
    xs = np.stack([r[0] for r in rows])
    inf = np.array([r[1] for r in rows], dtype=np.float32)
    les = np.array([r[2] for r in rows], dtype=np.float32)
    cells = np.stack([r[3] for r in rows])
    return xs, inf, les, cells


def _augment(
    x: torch.Tensor, cells: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The endoscope rotates freely: 90-degree turns and flips keep the truth (the lesion cells
    turn along); exposure and colour cast vary per frame (multiplicative in 0..1 values, so
    the black mask stays black)."""
    k = int(rng.integers(4))
    x = torch.rot90(x, k, dims=(2, 3))
    cells = torch.rot90(cells, k, dims=(1, 2))
    if rng.random() < 0.5:
        x = torch.flip(x, dims=(3,))
        cells = torch.flip(cells, dims=(2,))
    v = x * STD + MEAN
    n = x.shape[0]
    gain = torch.from_numpy(rng.uniform(0.75, 1.25, size=(n, 1, 1, 1)).astype(np.float32))
    cast = torch.from_numpy(np.exp(rng.normal(0.0, 0.06, size=(n, 3, 1, 1))).astype(np.float32))
    v = (v * gain * cast).clamp(0.0, 1.0)
    return (v - MEAN) / STD, cells


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the log loss of sigmoid(logit / T) (golden-section on log T)."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2.0)


def _logits(net: FrameNet, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    out_i, out_l = [], []
    with torch.no_grad():
        for s in range(0, len(xs), 64):
            yi, yl, _, _ = net(torch.from_numpy(xs[s : s + 64].astype(np.float32)))
            out_i.append(yi[:, 0].numpy())
            out_l.append(yl[:, 0].numpy())
    return np.concatenate(out_i), np.concatenate(out_l)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=9000)
    ap.add_argument("--calibration-frames", type=int, default=800)
    ap.add_argument("--minutes", type=float, default=13.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--calibration-out", type=Path, default=Path(__file__).parent / "endoscopy_calibration.json"
    )
    ap.add_argument("--cache", type=Path, default=None, help="npz of rendered frames (reused)")
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t0 = time.time()
    if args.cache is not None and args.cache.is_file():
        d = np.load(args.cache)
        xs, inf, les, cells = (d[k] for k in ("xs", "inf", "les", "cells"))
        cx, cinf, cles = (d[k] for k in ("cx", "cinf", "cles"))
    else:
        xs, inf, les, cells = make_dataset(args.frames, 0, TRAIN_MAX_SIDE, args.workers)
        cx, cinf, cles, _ = make_dataset(
            args.calibration_frames, CALIBRATION_SEED0, None, args.workers
        )
        if args.cache is not None:
            np.savez(args.cache, xs=xs, inf=inf, les=les, cells=cells, cx=cx, cinf=cinf, cles=cles)
    print(
        f"{len(xs)} training + {len(cx)} calibration frames in {time.time() - t0:.0f} s "
        f"({les.mean():.2f} lesion, {1 - inf.mean():.2f} uninformative)",
        flush=True,
    )
    torch.set_num_threads(args.threads)
    net = FrameNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    bce = nn.functional.binary_cross_entropy_with_logits
    t1 = time.time()
    budget = args.minutes * 60.0
    step = 0
    while time.time() - t1 < budget:
        frac = (time.time() - t1) / budget
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        net.train()
        idx = rng.integers(0, len(xs), size=args.batch)
        x, tc = _augment(
            torch.from_numpy(xs[idx].astype(np.float32)),
            torch.from_numpy(cells[idx].astype(np.float32)),
            rng,
        )
        yi, yl, _, cam = net(x)
        ti = torch.from_numpy(inf[idx])
        tl = torch.from_numpy(les[idx])
        # The lesion head scores every frame; an uninformative frame's lesion label (a blurred
        # or dark view of a lesion) is less certain, so it weighs half.
        wl = 0.5 + 0.5 * ti
        frame_loss = (bce(yl[:, 0], tl, reduction="none") * wl).mean()
        cell_loss = bce(cam, tc)
        loss = bce(yi[:, 0], ti) + frame_loss + 0.5 * cell_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} {time.time() - t1:.0f}s loss {loss.item():.4f}", flush=True)
    zi, zl = _logits(net, cx)
    t_inf = fit_temperature(zi, cinf)
    t_les = fit_temperature(zl, cles)
    print(
        f"calibration split: lesion AUC {roc_auc(zl, cles > 0.5):.4f}, informative AUC "
        f"{roc_auc(zi, cinf > 0.5):.4f}; temperatures: informative {t_inf:.3f}, "
        f"lesion {t_les:.3f}",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = {
        "temperature_informative": round(t_inf, 4),
        "temperature_lesion": round(t_les, 4),
        "data": f"{len(cx)} style-A frames, seeds {CALIBRATION_SEED0}+, full frame sizes",
        "steps": step,
        "minutes": round((time.time() - t1) / 60.0, 1),
        "threads": args.threads,
    }
    args.calibration_out.write_text(json.dumps(calibration, indent=2) + "\n")
    dummy = torch.zeros(BATCH, 3, SIZE, SIZE)
    torch.onnx.export(
        ExportNet(net, t_inf, t_les).eval(),
        (dummy,),
        str(args.out / "model.onnx"),
        input_names=["frame"],
        output_names=[
            "informative_probability",
            "lesion_probability",
            "features",
            "cam_weights",
            "cam_bias",
        ],
        opset_version=17,
        dynamo=False,
        do_constant_folding=True,
    )
    print(f"trained {step} steps in {time.time() - t1:.0f} s; exported {args.out / 'model.onnx'}")


if __name__ == "__main__":
    main()
