"""Per-layer profile, FLOP counts, epoch speed, and the ``bench layers`` / ``bench epoch`` commands.

Times themselves are never asserted (the machine is shared and noisy); we check what the numbers are
made of: one row per layer, the right FLOP counts, sums and shares that add up, a table and JSON that
carry them.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cnnlab.engine import backend
from cnnlab.training.presets import build
from cnnlab.engine.errors import ConfigError
from cnnlab.inspect_cli import bench
from cnnlab.bench.timing import EpochSpeed, benchmark_images, epoch_speed, layer_class, profile_layers


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)


def test_flop_counts_of_conv_and_dense():
    model = build("lenet5", seed=0)
    conv1, conv2 = [la for la in model.layers if la.kind == "Conv2D"]
    # conv1: 6 filters, 28x28 outputs (padding 2), 1 channel, 5x5 kernel; 2 FLOPs per multiply-add.
    assert conv1.forward_flops(10) == 2 * 10 * 6 * 28 * 28 * 1 * 5 * 5
    assert conv2.forward_flops(1) == 2 * 16 * 10 * 10 * 6 * 5 * 5
    dense = next(la for la in model.layers if la.kind == "Dense")
    assert dense.forward_flops(3) == 2 * 3 * 400 * 120
    # The first layer skips dL/dx, so its backward pass is one product (dW), the others two.
    assert not conv1.needs_input_grad and conv1.backward_flops(10) == conv1.forward_flops(10)
    assert conv2.backward_flops(4) == 2 * conv2.forward_flops(4)
    tanh = next(la for la in model.layers if la.kind == "Tanh")
    assert tanh.forward_flops(100) == 0 and tanh.backward_flops(100) == 0


def test_layer_classes():
    assert [layer_class(k) for k in ("Conv2D", "Dense", "MaxPool2D", "AvgPool2D", "ReLU", "Tanh", "BatchNorm")] == \
        ["conv", "dense", "pooling", "pooling", "activation", "activation", "normalization"]


def test_profile_has_a_row_per_layer_and_consistent_totals(batch):
    x, y = batch
    model = build("lenet5", seed=0)
    profile = profile_layers(model, x, y, steps=2, warmup=1, arch="lenet5")
    # Softmax is fused with the loss during training, so it is not profiled; every other layer is.
    assert [t.name for t in profile.layers] == [la.name for la in model.layers[:-1]]
    assert all(t.forward_ms > 0 and t.backward_ms >= 0 for t in profile.layers)
    assert profile.total_ms == pytest.approx(sum(t.total_ms for t in profile.layers) + profile.other_ms)
    assert sum(profile.share(t.total_ms) for t in profile.layers) + profile.share(profile.other_ms) == \
        pytest.approx(1.0)
    groups = profile.by_group()
    assert set(groups) == {"conv", "dense", "activation", "pooling", "reshape"}
    assert groups["conv"]["layers"] == 2 and groups["dense"]["layers"] == 3
    assert groups["conv"]["params"] + groups["dense"]["params"] == model.n_params
    assert groups["conv"]["flops"] == sum(la.forward_flops(8) + la.backward_flops(8)
                                          for la in model.layers if la.kind == "Conv2D")
    assert groups["conv"]["gflops"] > 0 and groups["activation"]["gflops"] is None
    text = profile.format()
    for layer in model.layers[:-1]:
        assert layer.name in text
    assert "by class" in text and "loss gradient + optimizer" in text
    record = json.loads(json.dumps(profile.to_dict()))
    assert record["batch"] == 8 and len(record["layers"]) == len(profile.layers)


def test_profile_steps_train_the_model(batch):
    """The profiled steps are real training steps: the weights move."""
    x, y = batch
    model = build("mlp", seed=0, output="softmax")
    before = model.layers[1].params["W"].copy()
    profile_layers(model, x, y, steps=1, warmup=0)
    assert not np.array_equal(before, model.layers[1].params["W"])


def test_epoch_speed_counts_images_and_epochs(batch):
    x, y = batch
    speed = epoch_speed(build("mlp", seed=0, output="softmax"), x, y, batch=3, epochs=2)
    assert isinstance(speed, EpochSpeed) and len(speed.seconds) == 2 and speed.images == 8
    assert speed.images_per_s == pytest.approx(8 / speed.epoch_s)
    assert speed.to_dict()["epoch_s_60k"] == pytest.approx(60_000 / speed.images_per_s)
    with pytest.raises(ConfigError, match="batch >= 1"):
        epoch_speed(build("mlp", seed=0), x, y, batch=0)


def test_benchmark_images_fall_back_to_random(tmp_path):
    x, y, source = benchmark_images(5, data_dir=tmp_path)  # an empty folder: no MNIST there
    assert source == "random" and x.shape == (5, 1, 28, 28) and x.dtype == np.float32 and y.shape == (5,)
    assert 0 <= x.min() and x.max() <= 1


def test_benchmark_images_refuse_an_unknown_dataset_instead_of_timing_noise(tmp_path):
    from cnnlab.engine.errors import DataError

    with pytest.raises(DataError, match="unknown dataset 'nosuch'"):
        benchmark_images(5, dataset="nosuch", data_dir=tmp_path)
    with pytest.raises(DataError):
        benchmark_images(5, dataset="folder:" + str(tmp_path / "missing"), data_dir=tmp_path)


def test_bench_layers_command(tmp_path):
    result = CliRunner().invoke(bench, ["layers", "--arch", "lenet5", "--batch", "4", "--steps", "1",
                                        "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "conv2d_0 (Conv2D)" in result.output and "dense_11 (Dense)" in result.output
    assert "conv layers:" in result.output and "dense layers:" in result.output
    result = CliRunner().invoke(bench, ["layers", "--arch", "mlp", "--batch", "4", "--steps", "1", "--json",
                                        "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["arch"] == "mlp" and record["data"] == "random"
    assert [r["kind"] for r in record["layers"]] == ["Flatten", "Dense", "Sigmoid", "Dense"]


def test_bench_epoch_command_times_each_arch_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    result = CliRunner().invoke(bench, ["epoch", "--arch", "mlp", "--arch", "lenet5", "--images", "6",
                                        "--batch", "3", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["results"]
    assert [(r["arch"], r["device"], r["images"]) for r in rows] == [("mlp", "cpu", 6), ("lenet5", "cpu", 6)]


def test_bench_epoch_on_gpu_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    result = CliRunner().invoke(bench, ["epoch", "--device", "gpu", "--images", "2"])
    assert isinstance(result.exception, ConfigError) and "CuPy" in str(result.exception)

