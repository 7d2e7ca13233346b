"""Seeded training data: synthetic frames letterboxed to the model input, boxes in input pixels.

``python -m models.data --frames 14000 --out models/work/train.npz`` renders the frames
in parallel processes (chunks of 500 with consecutive seeds, so the set is the same
whatever the process count) and saves them uncompressed: images as one uint8 array,
boxes as ``(frame, class, x1, y1, x2, y2)`` rows. Generate before training — data
generation in DataLoader workers steals the cores training needs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import cv2
import numpy as np

from workers.detect.boxes import letterbox
from workers.detect.painters import CLASSES
from workers.detect.synth import noise_bank, render_scene

TRAIN_SEED = 100_000
INPUT = 320
CHUNK = 500


def render_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``first .. first+count-1`` (one seed each) letterboxed to ``size``."""
    first, count, size = args
    bank = noise_bank(first, 640, 480)
    images = np.empty((count, size, size, 3), np.uint8)
    rows: list[tuple[float, ...]] = []
    for i in range(count):
        frame = render_scene(first + i, bank=bank)
        padded, lb = letterbox(frame.image, (size, size))
        images[i] = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)
        for t in frame.truth:
            box = (
                t.x1 * lb.gain + lb.pad_x,
                t.y1 * lb.gain + lb.pad_y,
                t.x2 * lb.gain + lb.pad_x,
                t.y2 * lb.gain + lb.pad_y,
            )
            rows.append((i, CLASSES.index(t.label), *box))
    return images, np.array(rows, np.float32).reshape(-1, 6)


def generate(
    frames: int, seed: int = TRAIN_SEED, size: int = INPUT, processes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``frames`` frames from ``seed`` on; (images N×S×S×3 RGB, boxes M×6)."""
    jobs = [(seed + start, min(CHUNK, frames - start), size) for start in range(0, frames, CHUNK)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(render_chunk, jobs)
    images = np.concatenate([p[0] for p in parts])
    offset, boxes = 0, []
    for imgs, rows in parts:
        rows = rows.copy()
        rows[:, 0] += offset
        boxes.append(rows)
        offset += len(imgs)
    return images, np.concatenate(boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=14_000)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("models/work/train.npz"))
    args = parser.parse_args()
    started = time.perf_counter()
    images, boxes = generate(args.frames, args.seed, processes=args.processes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, images=images, boxes=boxes)
    per_class = np.bincount(boxes[:, 1].astype(int), minlength=len(CLASSES))
    print(f"{len(images)} frames, {len(boxes)} boxes in {time.perf_counter() - started:.0f} s -> {args.out}")
    print("boxes per class:", dict(zip(CLASSES, per_class.tolist(), strict=True)))


if __name__ == "__main__":
    main()
