"""Train the reference endoscopy frame model (frame quality + lesion with a CAM) on synthetic
oesophagoscopy frames and export it to ONNX.

    .venv/bin/python training/train_endoscopy.py --out resources/models/endoscopy-lesion-ref

Training data: core.synthetic.endoscopy frames with seeds 0..N-1 (evaluation uses seeds >=
900000). Frames are rendered at 256x256 and shrunk to 128x128 with the same code inference
uses. The model outputs the informative-frame probability (stage 1), the lesion probability
(stage 2), the last feature map and the lesion classifier's weights and bias, so the runtime
computes a class activation map without gradients.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.synthetic.endoscopy import make_endoscopy_frame
from inference.frame_preprocess import to_model_input

SIZE = 128
BATCH = 8  # fixed batch: the runtime pads the last batch
MEAN, STD = 0.5, 0.25


class FrameNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(3, 16, 2), block(16, 32, 2), block(32, 32), block(32, 64, 2), block(64, 64)
        )
        self.informative = nn.Linear(64, 1)
        self.lesion = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        g = f.mean(dim=(2, 3))
        return self.informative(g), self.lesion(g), f


class ExportNet(nn.Module):
    def __init__(self, net: FrameNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inf, les, f = self.net(x)
        # Weights travel as outputs (a graph that depends on x keeps them out of constant folding).
        zero = (x[:1, :1, :1, :1] * 0.0).reshape(1, 1)
        w = self.net.lesion.weight + zero
        b = self.net.lesion.bias.reshape(1, 1) + zero
        return torch.sigmoid(inf), torch.sigmoid(les), f, w, b


def make_dataset(n: int, seed0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed0 + 1)
    xs = np.empty((n, 3, SIZE, SIZE), dtype=np.float16)
    inf = np.empty(n, dtype=np.float32)
    les = np.empty(n, dtype=np.float32)
    for k in range(n):
        u = rng.random()
        lesion = u < 0.5
        informative = rng.random() > (0.2 if lesion else 0.35)
        img, t = make_endoscopy_frame(
            seed=seed0 + k, rows=256, cols=256, lesion=lesion, informative=informative
        )
        xs[k] = to_model_input(img, SIZE, MEAN, STD)
        inf[k] = float(t.informative)
        les[k] = float(t.lesion)
    return xs, inf, les


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    t0 = time.time()
    xs, inf, les = make_dataset(args.frames, 0)
    print(f"{args.frames} frames in {time.time() - t0:.0f} s", flush=True)
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
        idx = rng.integers(0, len(xs), size=args.batch)
        x = torch.from_numpy(xs[idx].astype(np.float32))
        # Augmentation: the endoscope rotates freely; flips and 90 degree turns keep the truth.
        x = torch.rot90(x, int(rng.integers(4)), dims=(2, 3))
        if rng.random() < 0.5:
            x = torch.flip(x, dims=(3,))
        x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.1, 0.1))
        yi, yl, _ = net(x)
        ti = torch.from_numpy(inf[idx])
        tl = torch.from_numpy(les[idx])
        # The lesion head learns on informative frames only (stage 2 never sees the others).
        loss = bce(yi[:, 0], ti) + (
            bce(yl[:, 0], tl, reduction="none") * ti
        ).sum() / ti.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} {time.time() - t1:.0f}s loss {loss.item():.4f}", flush=True)
    net.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(BATCH, 3, SIZE, SIZE)
    torch.onnx.export(
        ExportNet(net),
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
