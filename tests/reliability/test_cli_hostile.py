"""Every command, given hostile values (0, negative, NaN, infinite, huge, the wrong type): exit code 2, a
message naming the option, never a traceback. A table: a new option joins it with one line."""

import pytest

from cnnlab.cli import main

HOSTILE = [  # (argv, what the message must mention)
    (["gradcheck", "--samples", "0"], "--samples"),
    (["gradcheck", "--batch", "0"], "--batch"),
    (["gradcheck", "--batch", "-3"], "--batch"),
    (["gradcheck", "--tolerance", "-1"], "--tolerance"),
    (["gradcheck", "--tolerance", "nan"], "--tolerance"),
    (["gradcheck", "--tolerance", "abc"], "--tolerance"),
    (["gradcheck", "--arch", "mlp:784-1000000000-10"], "parameters"),
    (["summary", "--arch", "mlp:784-1000000000-10"], "parameters"),
    (["summary", "--arch", "nonsense"], "nonsense"),
    (["data", "augment-grid", "{tmp}/g.png", "--rotation", "nan"], "--rotation"),
    (["data", "augment-grid", "{tmp}/g.png", "--shift", "inf"], "--shift"),
    (["data", "augment-grid", "{tmp}/g.png", "--scale", "-0.5"], "--scale"),
    (["data", "augment-grid", "{tmp}/g.png", "--count", "0"], "--count"),
    (["data", "augment-grid", "{tmp}/g.png", "--elastic-sigma", "0"], "--elastic-sigma"),
    (["data", "augment-grid", "{tmp}/g.png", "--noise", "1e308"], "--noise"),
    (["train", "--epochs", "0", "--out", "{tmp}/runs"], "epochs"),
    (["train", "--epochs", "-1", "--out", "{tmp}/runs"], "epochs"),
    (["train", "--epochs", "ten", "--out", "{tmp}/runs"], "--epochs"),
    (["train", "--lr", "-1", "--out", "{tmp}/runs"], "lr"),
    (["train", "--batch-size", "0", "--out", "{tmp}/runs"], "batch"),
    (["train", "--lr", "nan", "--out", "{tmp}/runs"], "lr must be a finite number"),
    (["train", "--momentum", "nan", "--out", "{tmp}/runs"], "momentum must be a finite number"),
    (["train", "--gamma", "inf", "--out", "{tmp}/runs"], "gamma must be a finite number"),
    (["train", "--weight-decay", "nan", "--out", "{tmp}/runs"], "weight_decay must be a finite number"),
    (["train", "--val-split", "nan", "--out", "{tmp}/runs"], "val_split must be a finite number"),
    (["train", "--lambda", "-1", "--out", "{tmp}/runs"], "lambda must be a finite number"),
    (["train", "--name", "../../escaped", "--out", "{tmp}/runs", "--epochs", "1"], "plain folder name"),
    (["train", "--name", "a/b", "--out", "{tmp}/runs", "--epochs", "1"], "plain folder name"),
    (["train", "--name", "..", "--out", "{tmp}/runs", "--epochs", "1"], "plain folder name"),
    (["train", "--folder-mode", "sepia", "--out", "{tmp}/runs"], "--folder-mode"),
    (["train", "--resume", "{tmp}/runs", "--lr", "nan"], "lr must be a finite number"),
    (["bench", "layers", "--batch", "0"], "--batch"),
    (["serve", "--port", "0"], "--port"),
    (["predict", "--example", "--top-k", "0"], "--top-k"),
    (["export", "--format", "tflite", "-o", "{tmp}/m.tflite"], "--format"),
    (["export", "-o", "{tmp}/m.bin"], "--format onnx or --format torch"),
    (["export", "-o", "{tmp}"], "-o"),
    (["import", "{tmp}/w.pt", "--arch", "lenet5", "--classes", "0", "-o", "{tmp}/m.safetensors"], "--classes"),
    (["import", "{tmp}/w.pt", "--arch", "lenet5", "--input-shape", "0,28,28", "-o", "{tmp}/m.safetensors"],
     "--input-shape"),
    (["import", "{tmp}/w.pt", "--arch", "lenet5", "--activation", "swish", "-o", "{tmp}/m.safetensors"], "swish"),
    (["import", "{tmp}/w.pt", "--arch", "lenet5", "-o", "{tmp}/m.safetensors"], "not found"),
]


@pytest.mark.parametrize(("argv", "mentions"), HOSTILE, ids=[" ".join(a) for a, _ in HOSTILE])
def test_hostile_values_are_one_clean_error(argv, mentions, tmp_path, capsys):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert "Traceback" not in text and mentions in text, text
    assert not (tmp_path / "runs").exists()  # nothing written on the way to the error
