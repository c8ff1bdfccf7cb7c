"""Messages name what the user typed (issue 12, item 10): no Python names (``lmbda``, ``first_n:``,
``Dense.__init__()``), no traceback — a table of mistakes in config files and options of ``cnnlab train``."""

import pytest

from cnnlab.cli import main

#: Python-side words a message to the user must never contain.
INTERNAL = ("__init__", "lmbda", "first_n", "unexpected keyword", "not supported between", "Traceback",
            "train_val_split", "positional argument")

CASES = [
    # (config file text or None, extra options, what the message must say)
    ('layers = [{type = "Flatten"}, {type = "Dense", config = {unit = 10}}, {type = "Softmax"}]', [],
     "layers[1] (Dense): unknown option 'unit'; expected some of: units"),
    ('layers = [{type = "Flatten"}, {type = "Dense", unit = 10}, {type = "Softmax"}]', [],
     "layers[1] (Dense): unknown option 'unit'"),
    ('layers = [{type = "Flatten"}, {type = "Dense"}, {type = "Softmax"}]', [],
     "layers[1] (Dense): option 'units' is required"),
    ('layers = [{type = "Dense2", units = 10}]', [], "layers[0]: unknown layer type 'Dense2'"),
    ('layers = [{type = "Flatten", config = [1, 2]}]', [], "layers[0] (Flatten): config must be a table"),
    ('augment = true\naugment_options = {rotaton = 5}', [],
     "augment_options: unknown option 'rotaton'; expected some of: rotation"),
    ('augment = true\naugment_options = {rotation = "x"}', [], "augment_options.rotation must be a finite number"),
    ('augment = true\naugment_options = {rotation = nan}', [], "augment_options.rotation must be a finite number"),
    ('augment = true\naugment_options = {shift = -1}', [], "augment_options: shift must be >= 0"),
    ('augment = true\naugment_options = {fill = 3}', [], "augment_options.fill must be text"),
    ("lambda = -1", [], "lambda must be a finite number >= 0.0"),
    (None, ["--lambda", "nan"], "lambda must be a finite number"),
    (None, ["--train-subset", "1000"], "--train-subset 1,000 is more than the 40 training images left after "
                                        "holding out 20 for validation; give at most 40"),
    (None, ["--val-split", "60"], "--val-split 60 holds out 60 of the 60 training images"),
    (None, ["--val-split", "0.001"], "--val-split 0.001 holds out 0 of the 60 training images"),
    (None, ["--resume", "RUN", "--batch-size", "5", "--lambda", "1"],
     "may be given, received --batch-size, --lambda"),
]


@pytest.mark.parametrize("text, options, message", CASES, ids=[c[2][:40] for c in CASES])
def test_train_mistakes_are_named_as_the_user_wrote_them(fake_mnist, tmp_path, capsys, text, options, message):
    args = ["train", "--arch", "mlp:784-16-10", "--dataset", "mnist", "--data-dir", str(fake_mnist.data_dir),
            "--val-split", "20", "--epochs", "1", "--no-progress", "--no-test", "--out", str(tmp_path / "runs")]
    if text is not None:
        (tmp_path / "c.toml").write_text(text + "\n")
        args += ["--config", str(tmp_path / "c.toml")]
    if "--resume" in options:
        args = ["train", *[str(tmp_path) if o == "RUN" else o for o in options]]
    else:
        args += options
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and not any(word in out + err for word in INTERNAL), err
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made
