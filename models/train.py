"""Train the shipped detector on pre-generated synthetic data with a fixed step budget.

``python -m models.train --data models/work/train.npz --steps 2400`` trains on the CPU
with 2 threads (channels_last, batch 32, AdamW lr 2e-3 wd 5e-4, 60-step warm-up,
cosine decay to 2 %, gradient clipping at 10, horizontal flips) and writes
``models/work/detector.pt``. ``--device cuda`` runs the same recipe on a GPU. The
step budget — not wall time — defines the result; on 2 cores it fits in 45 minutes
(see ``models/README.md``). Same seed, thread count and torch build give the same
weights; otherwise expect small differences and check mAP, not bytes.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from models.net import Net, detection_loss
from workers.detect.painters import CLASSES


class Batches:
    """Random batches of (images, box rows) from the ``.npz`` made by ``models.data``."""

    def __init__(self, path: Path, device: torch.device, seed: int) -> None:
        data = np.load(path)
        self.images = data["images"]
        boxes = data["boxes"]
        self.boxes = boxes[np.argsort(boxes[:, 0], kind="stable")]
        frames = self.boxes[:, 0].astype(np.int64)
        self.starts = np.searchsorted(frames, np.arange(len(self.images)), "left")
        self.ends = np.searchsorted(frames, np.arange(len(self.images)), "right")
        self.rng = np.random.default_rng(seed)
        self.device = device
        self.size = self.images.shape[1]

    def next(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch with horizontal flips on a random half."""
        idx = self.rng.choice(len(self.images), batch, replace=False)
        flip = self.rng.random(batch) < 0.5
        images = torch.from_numpy(self.images[idx]).to(self.device, non_blocking=True)
        images = images.permute(0, 3, 1, 2).float().div_(255)
        flip_t = torch.from_numpy(flip).to(self.device)
        images = torch.where(flip_t[:, None, None, None], images.flip(-1), images)
        rows = []
        for j, (i, f) in enumerate(zip(idx, flip, strict=True)):
            r = self.boxes[self.starts[i] : self.ends[i]].copy()
            r[:, 0] = j
            if f:
                r[:, [2, 4]] = self.size - r[:, [4, 2]]
            rows.append(r)
        boxes = torch.from_numpy(np.concatenate(rows) if rows else np.zeros((0, 6), np.float32)).to(self.device)
        return images, boxes


def lr_at(step: int, steps: int, base: float, warmup: int = 60, floor: float = 0.02) -> float:
    """Linear warm-up, then cosine decay to ``floor × base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def train(data: Path, steps: int, batch: int, device_name: str, threads: int, seed: int, out: Path) -> None:
    """Run the recipe and save the weights."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    net = Net(len(CLASSES)).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)  # 1.35× faster than NCHW on CPU
    else:
        torch.backends.cudnn.benchmark = True
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    batches = Batches(data, device, seed)
    print(f"{params:,} parameters, {len(batches.images)} frames, {steps} steps × batch {batch} on {device}")
    started = last = time.perf_counter()
    net.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, 2e-3)
        images, boxes = batches.next(batch)
        if device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        heat, box = net(images)
        loss, hm, giou = detection_loss(heat, box, boxes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            now = time.perf_counter()
            rate = batch * (50 if step else 1) / max(now - last, 1e-9)
            last = now
            print(
                f"step {step:5d}  loss {loss.item():7.3f}  heat {hm.item():6.3f}  giou {giou.item():5.3f}  "
                f"{rate:6.1f} img/s  {(now - started) / 60:5.1f} min",
                flush=True,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "classes": list(CLASSES), "steps": steps, "batch": batch}, out)
    print(f"trained in {(time.perf_counter() - started) / 60:.1f} min -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("models/work/train.npz"))
    parser.add_argument("--steps", type=int, default=2200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("models/work/detector.pt"))
    args = parser.parse_args()
    train(args.data, args.steps, args.batch, args.device, args.threads, args.seed, args.out)


if __name__ == "__main__":
    main()
