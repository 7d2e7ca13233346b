"""Export trained weights to ``models/detector.onnx`` (YOLOv8 layout) and ``models/labels.txt``.

``python -m models.export --weights models/work/detector.pt``. BatchNorm is folded
into the convolutions, opset 17, IR version 8 (what older onnxruntime builds read),
checked with ``onnx.checker``; class names, input size and stride go into the model's
metadata the way Ultralytics writes them, so other tools read them too.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from models.data import INPUT
from models.net import STRIDE, ExportWrapper, Net

MODEL_TYPE = "overwatch-synthetic-detector"


def export(weights: Path, out: Path, labels_out: Path) -> None:
    """Write the ONNX file and the labels file; print the torch/onnxruntime parity."""
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    classes = list(ckpt["classes"])
    net = Net(len(classes))
    net.load_state_dict(ckpt["state_dict"])
    wrapper = ExportWrapper(net).eval()
    dummy = torch.rand(1, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(out),
            input_names=["images"],
            output_names=["output0"],
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(out))
    model.ir_version = 8
    meta = {
        "names": repr(dict(enumerate(classes))),
        "imgsz": repr([INPUT, INPUT]),
        "stride": str(STRIDE),
        "task": "detect",
        "model_type": MODEL_TYPE,
        "description": "Constellation Overwatch synthetic-scene detector (knows the synthetic scene only)",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    labels_out.write_text("".join(f"{c}\n" for c in classes))
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": dummy.numpy()})[0]
    with torch.no_grad():
        want = wrapper(dummy).numpy()
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB, output {tuple(got.shape)}")
    print(
        f"parity torch vs onnxruntime: max |Δ| boxes {np.abs(got[:, :4] - want[:, :4]).max():.2e}, "
        f"scores {np.abs(got[:, 4:] - want[:, 4:]).max():.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=Path("models/work/detector.pt"))
    parser.add_argument("--out", type=Path, default=Path("models/detector.onnx"))
    parser.add_argument("--labels", type=Path, default=Path("models/labels.txt"))
    args = parser.parse_args()
    export(args.weights, args.out, args.labels)


if __name__ == "__main__":
    main()
