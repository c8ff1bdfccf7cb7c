"""Weight initialization: N(0, 1/n_in) ("default") versus N(0, 1) ("large"), epoch by epoch.

With N(0, 1) weights the weighted input ``z = Σ w x + b`` of a hidden neuron fed by hundreds of pixels
has a standard deviation of tens, so the sigmoid saturates, its derivative is nearly 0 and the neuron
learns slowly. Dividing the standard deviation by √n_in keeps ``z`` of order 1. Nielsen's chapter 3
shows the effect on ``[784, 30, 10]`` and ``[784, 100, 10]``: same final accuracy (eventually), but the
default initialization gets there in far fewer epochs. Settings (his): cross-entropy with sigmoid
outputs, SGD η = 0.1, λ = 5, mini-batches of 10, 30 epochs; biases N(0, 1) in both cases.
"""

from __future__ import annotations

from pathlib import Path

from .grid import Trial, base_config
from .report import Column, collect, markdown_table, new_figure, series, write_table

DEFAULT_ARCHS = ("mlp:784-30-10", "mlp:784-100-10")
INITS = ("default", "large")
BASE = {"loss": "binary-crossentropy", "optimizer": "sgd", "lr": 0.1, "lmbda": 5.0, "batch_size": 10,
        "epochs": 30, "val_split": 10000, "dataset": "mnist"}


def trials(archs=DEFAULT_ARCHS, inits=INITS, **options) -> list[Trial]:
    """One trial per (architecture, initialization); ``options`` override :data:`BASE`."""
    base = base_config(BASE, options, "init study")
    out = []
    for arch in archs:
        for init in inits:
            params = {"arch": arch, "init": init}
            short = arch.partition(":")[2] or arch
            out.append(Trial(f"{short}_init={init}", params, base.replace(**params), label=f"{short}, {init}"))
    return out


def write_report(study_trials: list[Trial], out: str | Path):
    """``results.md`` / ``results.csv`` (validation accuracy per epoch, one column per run) and
    ``accuracy.png`` (one panel per architecture) in ``out``."""
    from ..plots import save_figure

    out = Path(out)
    results = collect(study_trials, out)
    epochs = sorted({r["epoch"] for res in results for r in res.rows})
    columns = [Column("epoch", "epoch", "int")] + [Column(t.name, t.label, "percent") for t in study_trials]
    rows = []
    for e in epochs:
        row = {"epoch": e}
        for t, res in zip(study_trials, results):
            row[t.name] = next((r.get("val_accuracy") for r in res.rows if r["epoch"] == e), None)
        rows.append(row)
    summary = [{"run": t.label, "status": r.status, "first": r.rows[0].get("val_accuracy") if r.rows else None,
                "best": r.best_val_accuracy, "best_epoch": r.best_epoch, "test": r.test_accuracy}
               for t, r in zip(study_trials, results)]
    summary_columns = [Column("run", "run"), Column("status", "status"),
                       Column("first", "after epoch 1 (%)", "percent"), Column("best", "best val acc (%)", "percent"),
                       Column("best_epoch", "best epoch", "int"), Column("test", "test acc (%)", "percent")]
    cfg = study_trials[0].config
    notes = (f"Validation accuracy (%) after each epoch. {cfg.dataset}, loss {cfg.loss}, {cfg.optimizer} "
             f"η = {cfg.learning_rate}, λ = {cfg.lmbda}, batch {cfg.batch_size}. *default*: weights "
             f"N(0, 1/n_in); *large*: N(0, 1); biases N(0, 1) in both.\n\n## Summary\n\n"
             + markdown_table(summary_columns, summary))
    write_table(out / "results", columns, rows, "Weight initialization: default versus large", notes)
    save_figure(init_figure(study_trials, results), out / "accuracy.png")
    return results


def init_figure(study_trials: list[Trial], results):
    """One panel per architecture: validation accuracy per epoch for each initialization."""
    from matplotlib.ticker import MaxNLocator

    archs = list(dict.fromkeys(t.params["arch"] for t in study_trials))
    fig = new_figure(5.2 * len(archs), 4.3)
    axes = fig.subplots(1, len(archs), sharey=True, squeeze=False)[0]
    styles = {"default": dict(color="tab:blue", marker="o"), "large": dict(color="tab:red", marker="s")}
    for ax, arch in zip(axes, archs):
        for t, res in zip(study_trials, results):
            if t.params["arch"] != arch:
                continue
            e, v = series(res.rows, "val_accuracy")
            if e:
                init = t.params["init"]
                ax.plot(e, [100 * a for a in v], ms=3, label=f"{init} initialization",
                        **styles.get(init, dict(marker="^")))
        sizes = arch.partition(":")[2].replace("-", ", ")
        ax.set(title=f"[{sizes}]" if sizes else arch, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="lower right")
    axes[0].set_ylabel("validation accuracy (%)")
    return fig
