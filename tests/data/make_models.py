"""Make the tiny ONNX fixtures of ``tests/workers/detect/test_model.py`` (needs the ``train`` extra's onnx).

``python -m tests.data.make_models`` writes two models that ignore their 1×3×64×64 input
and return fixed predictions in the two layouts operators bring: YOLOv8/YOLO11-style
``1×(4+nc)×N`` (class names in metadata, NMS left to us) and end-to-end ``1×N×6``.
The files are committed so the tests need only onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent

# YOLO layout, 2 classes, 4 candidates (cx, cy, w, h, score_a, score_b) in 64×64 input pixels:
# two overlapping "a" boxes (NMS keeps the stronger), one "b" box, one below any threshold.
YOLO = (
    np.array(
        [  # one candidate per row here; the model's layout is attributes × candidates
            [16, 17, 32, 18, 0.9, 0.0],
            [17, 17, 30, 18, 0.8, 0.0],
            [40, 40, 16, 16, 0.05, 0.7],
            [8, 8, 8, 8, 0.0, 0.02],
        ],
        np.float32,
    )
    .T[None]
    .copy()
)
# End-to-end layout: (x1, y1, x2, y2, score, class) in input pixels.
E2E = np.array([[[8, 24, 24, 40, 0.95, 1], [40, 24, 56, 40, 0.6, 0], [0, 0, 4, 4, 0.01, 0]]], np.float32)


def model(out: np.ndarray, path: Path, names: dict[int, str] | None) -> None:
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))
    node = helper.make_node("Constant", [], ["output0"], value=numpy_helper.from_array(out))
    graph = helper.make_graph([node], "fixture", [image], [output])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    if names is not None:
        m.metadata_props.add(key="names", value=repr(names))
    onnx.checker.check_model(m)
    onnx.save(m, path)


if __name__ == "__main__":
    model(YOLO, HERE / "yolo_layout.onnx", {0: "alpha", 1: "bravo"})
    model(E2E, HERE / "end_to_end.onnx", None)
    print("wrote", HERE / "yolo_layout.onnx", HERE / "end_to_end.onnx")
