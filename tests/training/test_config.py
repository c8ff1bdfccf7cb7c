"""TrainConfig: defaults, config files (TOML, YAML), overrides, validation, the resolved record."""

import pytest

from cnnlab.training.callbacks import MONITORS
from cnnlab.training.config import TrainConfig, read_config_file, resolved
from cnnlab.engine.errors import ConfigError


def test_defaults_are_valid_and_lr_follows_the_optimizer():
    config = TrainConfig()
    assert config.arch == "lenet5" and config.dataset == "mnist"
    assert config.monitors == {m: True for m in MONITORS}
    assert config.learning_rate == 1e-3  # Adam's usual rate
    assert TrainConfig(optimizer="sgd").learning_rate == 0.1
    assert TrainConfig(optimizer="sgd", lr=3.0).learning_rate == 3.0


def test_toml_file_with_dashes_lambda_and_tables(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'arch = "mlp:784-30-10"\n'
        "batch-size = 10\n"
        "lambda = 5.0\n"
        'optimizer = "sgd"\n'
        "lr = 0.5\n"
        "[monitors]\n"
        "train-accuracy = false\n"
        "[arch_options]\n"
        'output = "sigmoid"\n'
    )
    config = TrainConfig.from_file(path)
    assert config.arch == "mlp:784-30-10"
    assert config.batch_size == 10
    assert config.lmbda == 5.0
    assert config.monitors["train_accuracy"] is False and config.monitors["val_accuracy"] is True
    assert config.arch_kwargs() == {"output": "sigmoid"}


def test_yaml_file_and_command_line_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("arch: vgg-mini\nepochs: 5\nactivation: elu\nmonitors: [val_accuracy]\n")
    config = TrainConfig.from_file(path)
    assert config.epochs == 5 and config.arch_kwargs() == {"activation": "elu"}
    assert config.monitors == {"train_cost": False, "train_accuracy": False, "val_cost": False,
                               "val_accuracy": True}
    # Command-line options override the file; None means "not given" and keeps the file's value.
    merged = config.replace(epochs=2, batch_size=None, **{"batch-size": 32})
    assert (merged.arch, merged.epochs, merged.batch_size) == ("vgg-mini", 2, 32)
    assert config.epochs == 5  # replace returns a copy


@pytest.mark.parametrize("content, suffix, message", [
    ("epochz = 3\n", ".toml", "unknown option 'epochz'"),
    ("epochs = [\n", ".toml", "invalid TOML"),
    ("epochs: [1, \n", ".yaml", "invalid YAML"),
    ("epochs = 3\n", ".ini", "must end in .toml"),
])
def test_bad_files_are_clear_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"run{suffix}"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_file(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        read_config_file("/no/such/file.toml")


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "epochs must be a positive integer, received 0"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"lr": -1.0}, "lr must be a finite number >= 0"),
    ({"lr": 0}, "lr must be > 0"),
    ({"lmbda": 5.0, "weight_decay": 1e-4}, "not both"),
    ({"monitors": {"test_accuracy": True}}, "unknown monitor"),
    ({"val_split": 2.5}, "val_split must be a fraction"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"arch": 5}, "arch must be a non-empty string, received 5"),
    ({"optimizer": 3}, "optimizer must be a non-empty string, received 3"),
    ({"dataset": 5}, "dataset must be a non-empty string, received 5"),
    ({"name": ["a"]}, "name must be a non-empty string"),
    ({"augment": "no"}, "augment must be true or false, received 'no'"),
    ({"progress": 1}, "progress must be true or false, received 1"),
    ({"monitors": {"train_cost": "false"}}, "monitors.train_cost must be true or false, received 'false'"),
    ({"lr": "0.1"}, "lr must be a finite number >= 0.0, received '0.1'"),
    ({"early_stop": 3, "val_split": 0}, "early_stop=3 watches the validation accuracy, but val_split is 0"),
    ({"early_stop": 3, "monitors": {"val_accuracy": False}}, "the val_accuracy monitor is off"),
])
def test_invalid_values_name_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_resolved_record_has_versions_seed_and_derived_values():
    import numpy as np

    record = resolved(TrainConfig(seed=7, lmbda=5.0), weight_decay=1e-4, n_train=50_000)
    assert record["config"]["seed"] == 7 and record["config"]["lmbda"] == 5.0
    assert record["resolved"]["seed"] == 7 and record["resolved"]["weight_decay"] == 1e-4
    assert record["versions"]["numpy"] == np.__version__
    assert "python" in record["versions"] and "cnnlab" in record["versions"]
    # The saved config can be read back as a TrainConfig (this is what --resume does).
    assert TrainConfig.from_dict(record["config"]) == TrainConfig(seed=7, lmbda=5.0)


def test_layers_from_a_config_file_build_the_model(tmp_path):
    from cnnlab.training.recipes import build_model

    path = tmp_path / "net.toml"
    path.write_text('layers = [{type = "Flatten"}, {type = "Dense", units = 12}, {type = "ReLU"},\n'
                    '          {type = "Dense", units = 10}, {type = "Softmax"}]\n')
    model = build_model(TrainConfig.from_file(path), (1, 28, 28), 10)
    assert [layer.kind for layer in model.layers] == ["Flatten", "Dense", "ReLU", "Dense", "Softmax"]
    assert model.n_params == 784 * 12 + 12 + 12 * 10 + 10


def test_mlp_output_follows_the_loss():
    from cnnlab.training.recipes import build_model

    softmax = build_model(TrainConfig(arch="mlp:784-30-10"), (1, 28, 28), 10)
    sigmoid = build_model(TrainConfig(arch="mlp:784-30-10", loss="quadratic"), (1, 28, 28), 10)
    assert softmax.layers[-1].kind == "Softmax" and sigmoid.layers[-1].kind == "Sigmoid"
    with pytest.raises(ConfigError, match="unknown layer type 'Dens'"):
        build_model(TrainConfig(layers=[{"type": "Dens"}]), (1, 28, 28), 10)


def test_yaml_strings_for_switches_are_refused_not_read_as_true(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text('monitors:\n  train_cost: "false"\n')
    with pytest.raises(ConfigError, match="monitors.train_cost must be true or false"):
        TrainConfig.from_file(path)
    path.write_text("monitors:\n  train_cost: false\naugment: true\n")
    config = TrainConfig.from_file(path)
    assert config.monitors["train_cost"] is False and config.augment is True


def test_binary_or_misnamed_config_files_are_clear_errors(tmp_path):
    binary = tmp_path / "run.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="must be UTF-8 text"):
        TrainConfig.from_file(binary)
    picture = tmp_path / "run.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="must end in .toml"):
        TrainConfig.from_file(picture)


def test_paths_are_accepted_and_stored_as_text(tmp_path):
    config = TrainConfig(out=tmp_path, data_dir=tmp_path / "data")
    assert config.out == str(tmp_path) and config.data_dir == str(tmp_path / "data")


@pytest.mark.parametrize("options, message", [
    ({"loss": 7}, "loss must be a non-empty string, received 7"),
    ({"loss": "hinge"}, "unknown loss 'hinge'; expected one of: quadratic"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; expected one of: sgd"),
    ({"schedule": "foo"}, "unknown schedule 'foo'; expected one of: constant, step, cosine"),
    ({"arch": "resnet"}, "unknown architecture 'resnet'"),
    ({"arch": "keras-mnist", "arch_options": {"dropot": 0.3}}, "keras-mnist preset has no option 'dropot'"),
    ({"arch": "mlp:784-30-10", "pooling": "max"}, "mlp preset has no option 'pooling'"),
])
def test_names_are_checked_against_the_registries_when_the_config_is_made(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_known_names_pass_in_any_case_and_layers_skip_the_preset_check():
    TrainConfig(loss="CE", optimizer="AdamW", schedule="cosine", arch="keras-mnist", arch_options={"dropout": 0.3})
    TrainConfig(arch="my-net", layers=[{"type": "Flatten"}, {"type": "Dense", "units": 10}])


def test_weight_decay_is_passed_only_when_given_so_adamw_keeps_its_default():
    from cnnlab.engine.optim import AdamW
    from cnnlab.training.recipes import build_optimizer

    optimizer, decay = build_optimizer(TrainConfig(optimizer="adamw"), n_train=1000)
    assert isinstance(optimizer, AdamW) and optimizer.weight_decay == decay == 1e-2
    assert build_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.0), 1000)[1] == 0.0
    assert build_optimizer(TrainConfig(optimizer="adamw", lmbda=0.0), 1000)[1] == 0.0
    assert build_optimizer(TrainConfig(optimizer="adam"), 1000)[1] == 0.0
    assert build_optimizer(TrainConfig(optimizer="sgd", lmbda=5.0), 1000)[1] == pytest.approx(5.0 / 1000)
