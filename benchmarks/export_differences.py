"""Measure how far exported models are from cnnlab: max |difference| of the outputs on MNIST test images.

For each preset (randomly initialised, BatchNorm statistics randomised as in the tests) and the bundled
LeNet-5: onnxruntime on the ONNX export, and PyTorch (eval mode) on the ``.pt`` export rebuilt as a
PyTorch user would, both against cnnlab's float32 forward pass. Figures for docs/export.md::

    CNNLAB_DATA=../shared/datasets python benchmarks/export_differences.py --images 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="MNIST test images (the first N)")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from torch import nn

    from cnnlab.data import load_dataset
    from cnnlab.data.normalize import normalize
    from cnnlab.io import load_bundled_model
    from cnnlab.interop.onnx_export import to_onnx
    from cnnlab.interop.torch_export import export_torch
    from export_models import PRESETS, preset

    x = normalize(load_dataset("mnist", split="test", progress=False).images[: args.images])
    print(f"{len(x):,} MNIST test images, float32; max |difference| of the outputs against cnnlab")
    print(f"{'model':<14}{'outputs':<10}{'onnxruntime':>12}{'pytorch':>12}{'onnx, logits':>14}{'|logit| max':>13}")
    for name in (*PRESETS, "bundled"):
        model = load_bundled_model() if name == "bundled" else preset(name)
        ours = model.predict_proba(x)
        onnx_diff = np.abs(run_onnx(ort, to_onnx(model), x) - ours).max()
        # The same without the output activation: a softmax squeezes differences of large logits.
        logits_model = without_last_layer(model)
        logits = logits_model.predict_proba(x)
        logit_diff = np.abs(run_onnx(ort, to_onnx(logits_model), x) - logits).max()
        with tempfile.TemporaryDirectory() as folder:
            path = export_torch(model, Path(folder) / "m.pt")
            bundle = torch.load(path, weights_only=True)
        net = nn.Sequential(*[getattr(nn, m["type"])(**m["kwargs"]) for m in bundle["modules"]])
        net.load_state_dict(bundle["state_dict"])
        with torch.no_grad():
            torch_diff = np.abs(net.eval()(torch.from_numpy(x)).numpy() - ours).max()
        kind = model.layers[-1].kind.lower()
        print(f"{name:<14}{kind:<10}{onnx_diff:>12.1e}{torch_diff:>12.1e}{logit_diff:>14.1e}"
              f"{np.abs(logits).max():>13.1f}")


def run_onnx(ort, proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def without_last_layer(model):
    """The same network and weights, less its output activation (Softmax or Sigmoid, which hold none)."""
    from cnnlab.engine.model import Sequential

    config = model.get_config()
    config["layers"] = config["layers"][:-1]
    truncated = Sequential.from_config(config)
    truncated.load_state_dict(model.state_dict())
    return truncated


if __name__ == "__main__":
    main()
