"""Accuracy versus training-set size: how much does more data help?

One run per size ``n`` (the first ``n`` images left after holding out the validation set). Two things
are scaled so that the runs differ in the amount of data and in nothing else:

* **epochs** grow as the set shrinks, ``epochs(n) = min(max_epochs, round(epochs · n_max / n))``: every
  run sees about as many examples (so as many mini-batch updates) as the largest one, until the cap;
* **λ** (classic L2) shrinks with ``n``, ``λ(n) = λ · n / n_max``: the weight decay applied at every update,
  ``η λ / n`` (Nielsen's rule ``w -> (1 - ηλ/n) w - ...``), stays the same for every size.

Defaults follow Nielsen's chapter 3 experiment: the ``[784, 30, 10]`` network, cross-entropy with
sigmoid outputs, SGD with η = 0.5, λ = 5 for 50,000 images, mini-batches of 10.
"""

from __future__ import annotations

import math
from pathlib import Path

from .grid import Trial, base_config
from .report import Column, collect, new_figure, write_table

DEFAULT_SIZES = (100, 300, 1000, 3000, 10000, 50000)
BASE = {"arch": "mlp:784-30-10", "loss": "binary-crossentropy", "init": "default", "optimizer": "sgd",
        "lr": 0.5, "lmbda": 5.0, "batch_size": 10, "epochs": 10, "val_split": 10000, "dataset": "mnist"}
DEFAULT_MAX_EPOCHS = 200


def scaled_epochs(n: int, largest: int, epochs: int, max_epochs: int) -> int:
    """Epochs for ``n`` images so that it sees about ``epochs · largest`` examples (at most ``max_epochs``)."""
    return max(1, min(max_epochs, round(epochs * largest / n)))


def scaled_lambda(n: int, largest: int, lmbda: float) -> float:
    """λ for ``n`` images keeping ``λ / n`` (the weight-decay factor) equal to ``lmbda / largest``."""
    return lmbda * n / largest


def trials(sizes=DEFAULT_SIZES, *, max_epochs: int = DEFAULT_MAX_EPOCHS, **options) -> list[Trial]:
    """One trial per size. ``options`` override :data:`BASE`; ``epochs`` and ``lambda`` are the values for
    the largest size, scaled for the others."""
    from ..engine.errors import ConfigError

    sizes = sorted(set(int(s) for s in sizes))
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"sizes must be positive integers like 100,1000,10000, received {sizes!r}")
    base = base_config(BASE, options, "datasize study")
    largest = sizes[-1]
    out = []
    for n in sizes:
        params = {"train_subset": n, "epochs": scaled_epochs(n, largest, base.epochs, max_epochs)}
        if base.lmbda:
            params["lmbda"] = scaled_lambda(n, largest, base.lmbda)
        out.append(Trial(f"n={n}", params, base.replace(**params), label=f"n = {n:,}"))
    return out


def write_report(study_trials: list[Trial], out: str | Path):
    """``results.md`` / ``results.csv`` and ``accuracy.png`` (accuracy vs size, log axis) in ``out``."""
    from ..plots import save_figure

    out = Path(out)
    results = collect(study_trials, out)
    rows = []
    for t, r in zip(study_trials, results):
        n, cfg = t.params["train_subset"], t.config
        rows.append({"n": n, "epochs": cfg.epochs, "updates": cfg.epochs * math.ceil(n / cfg.batch_size),
                     "lambda": cfg.lmbda, "decay_factor": (cfg.lmbda or 0.0) / n, "status": r.status,
                     "final_train_accuracy": r.final("train_accuracy"),
                     "final_val_accuracy": r.final_val_accuracy, "best_val_accuracy": r.best_val_accuracy,
                     "test_accuracy": r.test_accuracy, "trial": t.name})
    columns = [Column("trial", "trial", markdown=False), Column("n", "training images", "int"),
               Column("epochs", "epochs", "int"), Column("updates", "updates", "int"),
               Column("lambda", "λ", "number"), Column("decay_factor", "λ/n", "number"), Column("status", "status"),
               Column("final_train_accuracy", "train acc (%)", "percent"),
               Column("final_val_accuracy", "final val acc (%)", "percent"),
               Column("best_val_accuracy", "best val acc (%)", "percent"),
               Column("test_accuracy", "test acc (%)", "percent")]
    cfg = study_trials[-1].config
    notes = (f"`{cfg.arch}` on {cfg.dataset}, {cfg.optimizer} η = {cfg.learning_rate}, batch {cfg.batch_size}, "
             f"loss {cfg.loss}. Epochs scaled so each run makes about as many updates as the largest "
             f"(capped); λ scaled with n so that the weight-decay factor λ/n is the same for every size. "
             f"*train acc*: running accuracy over the last epoch.")
    write_table(out / "results", columns, rows, "Accuracy versus training-set size", notes)
    save_figure(datasize_figure(rows), out / "accuracy.png")
    return results


def datasize_figure(rows: list[dict]):
    """Test, best validation and training accuracy against the number of training images (log x)."""
    fig = new_figure(7.5, 4.8)
    ax = fig.subplots()
    for key, label, style in (("test_accuracy", "test", dict(marker="o", color="tab:blue")),
                              ("best_val_accuracy", "validation (best epoch)", dict(marker="s", color="tab:orange")),
                              ("final_train_accuracy", "training (last epoch)", dict(marker="^", color="tab:gray",
                                                                                     ls="--"))):
        points = [(r["n"], 100 * r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label=label, **style)
    for r in rows:
        if r.get("test_accuracy") is not None:
            ax.annotate(f"{100 * r['test_accuracy']:.1f}", (r["n"], 100 * r["test_accuracy"]),
                        textcoords="offset points", xytext=(-4, 7), ha="right", fontsize=8, color="tab:blue")
    ax.set_xscale("log")
    ax.set(xlabel="training images (log scale)", ylabel="accuracy (%)", title="accuracy versus training-set size")
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend()
    return fig
