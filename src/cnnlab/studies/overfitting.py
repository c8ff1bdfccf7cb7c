"""Overfitting: a small training set, many epochs, and what L2 and augmentation change.

Nielsen's chapter 3 trains ``[784, 30, 10]`` on the first 1,000 MNIST images for 400 epochs: the
training cost keeps falling and the training accuracy reaches 100 %, while the validation accuracy
stalls near 82 % and the validation cost starts rising — the network learns the peculiarities of its
1,000 images instead of digits. Four runs compare the cures:

=================  ==========  ============
run                L2 (λ)      augmentation
=================  ==========  ============
plain              0           off
L2                 0.1         off
augmentation       0           on  (random rotation / shift / scale of every training image)
L2 + augmentation  0.1         on
=================  ==========  ============

λ = 0.1 for 1,000 images is the weight-decay factor λ/n = 1e-4 of Nielsen's λ = 5 for 50,000. Training
cost and accuracy are measured after each epoch on the (unaugmented) training images in inference mode
(``full_train_eval``), so the four runs compare like with like; costs are the data term only (the L2
penalty is not added), so that runs with and without L2 compare too.
"""

from __future__ import annotations

from pathlib import Path

from .grid import Trial, base_config
from .report import Column, collect, new_figure, series, write_table

BASE = {"arch": "mlp:784-30-10", "loss": "binary-crossentropy", "init": "default", "optimizer": "sgd",
        "lr": 0.5, "batch_size": 10, "epochs": 400, "train_subset": 1000, "val_split": 10000,
        "full_train_eval": True, "dataset": "mnist"}
DEFAULT_LAMBDA = 0.1


def trials(lmbda: float = DEFAULT_LAMBDA, **options) -> list[Trial]:
    """The four runs (plain, L2, augmentation, both); ``options`` override :data:`BASE`."""
    base = base_config(BASE, options, "overfitting study")
    runs = [("plain", "no regularization", 0.0, False), ("l2", f"L2 (λ = {lmbda:g})", lmbda, False),
            ("augment", "augmentation", 0.0, True), ("l2+augment", "L2 + augmentation", lmbda, True)]
    return [Trial(name, {"lmbda": lam, "augment": aug}, base.replace(lmbda=lam, augment=aug), label=label)
            for name, label, lam, aug in runs]


def write_report(study_trials: list[Trial], out: str | Path):
    """``results.md`` / ``results.csv`` and ``curves.png`` (cost and accuracy, training vs validation)."""
    from ..plots import save_figure

    out = Path(out)
    results = collect(study_trials, out)
    rows = []
    for t, r in zip(study_trials, results):
        train_acc, val_acc = r.final("train_accuracy"), r.final_val_accuracy
        rows.append({"trial": t.name, "run": t.label, "lambda": t.config.lmbda, "augment": t.config.augment,
                     "status": r.status, "epochs": r.epochs_done, "final_train_accuracy": train_acc,
                     "final_val_accuracy": val_acc,
                     "gap": train_acc - val_acc if train_acc is not None and val_acc is not None else None,
                     "best_val_accuracy": r.best_val_accuracy, "best_epoch": r.best_epoch,
                     "final_train_cost": r.final("train_cost"), "final_val_cost": r.final("val_cost"),
                     "lowest_val_cost_epoch": _argmin_epoch(r.rows, "val_cost"), "test_accuracy": r.test_accuracy})
    columns = [Column("trial", "trial", markdown=False), Column("run", "run"), Column("lambda", "λ", "number"),
               Column("augment", "augment"), Column("status", "status"), Column("epochs", "epochs", "int"),
               Column("final_train_accuracy", "train acc (%)", "percent"),
               Column("final_val_accuracy", "val acc (%)", "percent"), Column("gap", "gap (points)", "percent"),
               Column("best_val_accuracy", "best val acc (%)", "percent"), Column("best_epoch", "best epoch", "int"),
               Column("final_train_cost", "train cost", "float"), Column("final_val_cost", "val cost", "float"),
               Column("lowest_val_cost_epoch", "lowest val cost at epoch", "int"),
               Column("test_accuracy", "test acc (%)", "percent")]
    cfg = study_trials[0].config
    notes = (f"`{cfg.arch}` trained on the first {cfg.train_subset:,} images of {cfg.dataset} ({cfg.optimizer} "
             f"η = {cfg.learning_rate}, batch {cfg.batch_size}, loss {cfg.loss}). Values after the last epoch; "
             f"training metrics measured on the training images without augmentation; costs without the L2 "
             f"term. *gap*: training minus validation accuracy.")
    write_table(out / "results", columns, rows, "Overfitting: 1,000 training images, with and without "
                "L2 and augmentation" if cfg.train_subset == 1000 else "Overfitting", notes)
    save_figure(overfitting_figure(study_trials, results), out / "curves.png")
    return results


def _argmin_epoch(rows, key):
    points = [(r[key], r["epoch"]) for r in rows if r.get(key) is not None]
    return min(points)[1] if points else None


def overfitting_figure(study_trials: list[Trial], results):
    """Two rows (cost, accuracy) by one column per run: training (blue) against validation (orange)."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(3.6 * len(study_trials), 6.4)
    axes = fig.subplots(2, len(study_trials), sharey="row", squeeze=False)
    for col, (t, res) in enumerate(zip(study_trials, results)):
        ax_cost, ax_acc = axes[0, col], axes[1, col]
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            name = "training" if split == "train" else "validation"
            e, v = series(res.rows, f"{split}_cost")
            if e:
                ax_cost.plot(e, v, color=color, lw=1.2, label=name)
            e, v = series(res.rows, f"{split}_accuracy")
            if e:
                ax_acc.plot(e, [100 * a for a in v], color=color, lw=1.2, label=name)
        ax_cost.set_title(t.label)
        ax_acc.set_xlabel("epoch")
        for ax in (ax_cost, ax_acc):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.lines and col == 0:
                ax.legend()
    axes[0, 0].set_ylabel("cost")
    axes[1, 0].set_ylabel("accuracy (%)")
    return fig
