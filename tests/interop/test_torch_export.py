"""PyTorch both ways: `cnnlab export --format torch` for PyTorch users, `cnnlab import` back, strictly."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.io import load_model, save_model

torch = pytest.importorskip("torch", reason="PyTorch export tests need torch (pip install -e '.[test]')")
from torch import nn  # noqa: E402

from cnnlab.interop.torch_bridge import from_torch, to_torch, torch_code  # noqa: E402
from export_models import PRESETS, every_layer_model, preset  # noqa: E402

TOLERANCE = 1e-5


def images(shape=(1, 28, 28), n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def rebuild_as_a_pytorch_user_would(path):
    """The recipe of docs/export.md: torch and torch.nn only, nothing from cnnlab."""
    bundle = torch.load(path, weights_only=True)
    net = nn.Sequential(*[getattr(nn, m["type"])(**m["kwargs"]) for m in bundle["modules"]])
    net.load_state_dict(bundle["state_dict"])  # strict: every name and shape
    return net.eval(), bundle


def torch_outputs(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_goes_to_pytorch_and_back_with_the_same_outputs(name, tmp_path, capsys):
    model = preset(name)
    x = images()
    expected = model.predict_proba(x)
    model_file = save_model(model, tmp_path / "m.safetensors")
    assert main(["export", str(model_file), "--format", "torch", "-o", str(tmp_path / "m.pt")]) == 0
    net, bundle = rebuild_as_a_pytorch_user_would(tmp_path / "m.pt")
    assert np.abs(torch_outputs(net, x) - expected).max() <= TOLERANCE
    # The printed source builds the same modules: the state dict loads into it strictly.
    eval(bundle["code"], {"nn": nn}).load_state_dict(bundle["state_dict"])
    assert bundle["preprocessing"]["scale"] == pytest.approx(1 / 255)

    assert main(["import", str(tmp_path / "m.pt"), "--arch", name, "-o", str(tmp_path / "back.safetensors")]) == 0
    back = load_model(tmp_path / "back.safetensors")
    assert np.abs(back.predict_proba(x) - expected).max() <= TOLERANCE
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)
    assert "wrote" in capsys.readouterr().out


def test_a_plain_state_dict_saved_by_pytorch_imports_into_a_preset(tmp_path):
    """A PyTorch user's own file: torch.save(net.state_dict()), no cnnlab bundle around it."""
    model = preset("cnn-bn", seed=3)
    net = to_torch(model)  # logits: nn.Sequential without the Softmax, as for CrossEntropyLoss
    torch.save(net.state_dict(), tmp_path / "user.pt")
    assert main(["import", str(tmp_path / "user.pt"), "--arch", "cnn-bn", "-o", str(tmp_path / "m.safetensors")]) == 0
    x = images(seed=1)
    assert np.abs(load_model(tmp_path / "m.safetensors").predict_proba(x) - model.predict_proba(x)).max() <= TOLERANCE


@pytest.mark.parametrize("softmax", [True, False], ids=["probabilities", "logits"])
def test_every_layer_type_round_trips_through_to_torch_and_from_torch(softmax):
    model = every_layer_model(softmax=softmax)
    x = np.random.default_rng(2).normal(size=(16, 3, 13, 11)).astype(np.float32)
    net = to_torch(model, drop_final_softmax=False).eval()
    assert "nn.ZeroPad2d(padding=(1, 2, 1, 2))" in torch_code(model)  # the uneven "same" padding
    assert np.abs(torch_outputs(net, x) - model.predict_proba(x)).max() <= TOLERANCE
    fresh = every_layer_model(seed=9, softmax=softmax)
    assert np.abs(fresh.predict_proba(x) - model.predict_proba(x)).max() > 1e-3  # different weights first
    from_torch(net, fresh)
    assert np.abs(fresh.predict_proba(x) - model.predict_proba(x)).max() <= TOLERANCE


def _edited(state: dict, drop=(), add=None, reshape=None) -> dict:
    state = dict(state)
    for key in drop:
        del state[key]
    if add:
        state.update(add)
    if reshape:
        state[reshape] = torch.zeros(3, 3)
    return state


@pytest.mark.parametrize("edit,message", [
    (lambda s: _edited(s, drop=["0.bias"]), "missing 0.bias"),
    (lambda s: _edited(s, add={"features.9.weight": torch.zeros(2)}), "unexpected features.9.weight"),
    (lambda s: _edited(s, reshape="3.weight"), "tensor 3.weight has shape (3, 3); lenet5 needs (16, 6, 5, 5)"),
    (lambda s: {**s, "0.bias": torch.full((6,), float("nan"))}, "NaN"),
    (lambda s: {**s, "0.bias": torch.zeros(6, dtype=torch.int64)}, "dtype torch.int64"),
])
def test_import_refuses_a_mismatch_in_one_line_and_keeps_the_old_output(tmp_path, capsys, edit, message):
    state = to_torch(preset("lenet5")).state_dict()
    torch.save(edit(state), tmp_path / "w.pt")
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"an older model")
    assert main(["import", str(tmp_path / "w.pt"), "--arch", "lenet5", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.read_bytes() == b"an older model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "w.pt"]


class NotATensor:
    """A class a pickle would import and instantiate: weights_only=True must refuse it."""


def test_import_never_unpickles_code_and_rejects_what_is_not_a_state_dict(tmp_path, capsys):
    torch.save({"0.weight": NotATensor()}, tmp_path / "object.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    exported = tmp_path / "lenet.pt"
    assert main(["export", "lenet5", "--format", "torch", "-o", str(exported)]) == 0  # the bundled LeNet-5
    cases = [
        (["object.pt", "--arch", "lenet5"], "NotATensor"),
        (["tensor.pt", "--arch", "lenet5"], "not a state dict"),
        (["text.pt", "--arch", "lenet5"], "not a PyTorch file"),
        (["missing.pt", "--arch", "lenet5"], "not found"),
        (["lenet.pt", "--arch", "lenet5", "--activation", "relu"], "layer 1 is Tanh in the file, ReLU here"),
        (["lenet.pt", "--arch", "resnet"], "unknown architecture"),
    ]
    capsys.readouterr()
    for argv, message in cases:
        argv = [str(tmp_path / argv[0]), *argv[1:]]
        assert main(["import", *argv, "-o", str(tmp_path / "out.safetensors")]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.safetensors").exists()


def test_missing_torch_is_one_line_naming_what_to_install(tmp_path, capsys, monkeypatch):
    torch.save(to_torch(preset("mlp")).state_dict(), tmp_path / "w.pt")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    for argv in (["export", "--format", "torch", "-o", str(tmp_path / "m.pt")],
                 ["import", str(tmp_path / "w.pt"), "--arch", "mlp", "-o", str(tmp_path / "m.safetensors")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "pip install torch" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]
