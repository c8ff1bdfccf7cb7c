"""`cnnlab summary` and `cnnlab gradcheck` through the real entry point."""

from cnnlab.cli import main


def test_summary_prints_the_keras_table(capsys):
    assert main(["summary", "--arch", "keras-mnist"]) == 0
    out = capsys.readouterr().out
    for figure in ("320", "18,496", "16,010", "Total params: 34,826"):
        assert figure in out


def test_gradcheck_passes_for_lenet5(capsys):
    assert main(["gradcheck", "--arch", "lenet5", "--input-shape", "1,16,16", "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "Conv2D" in out and "Dense" in out


def test_gradcheck_exit_code_1_when_a_gradient_is_wrong(capsys, monkeypatch):
    from cnnlab.engine.layers.dense import Dense

    original = Dense.backward

    def wrong(self, grad):
        out = original(self, grad)
        self.grads["b"] = self.grads["b"] * 2
        return out

    monkeypatch.setattr(Dense, "backward", wrong)
    assert main(["gradcheck", "--arch", "mlp:784-30-10", "--samples", "3", "--loss", "quadratic"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_user_mistakes_are_one_line_errors(capsys):
    assert main(["summary", "--arch", "resnet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown architecture 'resnet'") and "Traceback" not in err
    assert main(["summary", "--input-shape", "a,b"]) == 2
