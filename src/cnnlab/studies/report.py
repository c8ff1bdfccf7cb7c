"""Results of sweeps and studies: read back from the run folders, written as Markdown + CSV tables and figures.

The run folders are the single source of truth: :func:`read_result` takes every number from a trial's
``summary.json``, ``metrics.json`` and model file, so a table can always be rebuilt (``cnnlab sweep``
run again on a finished sweep just rewrites it). CSV cells hold raw values (accuracies as fractions,
full precision) for further analysis; the Markdown table is for reading (percentages, rounded).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from .grid import Trial, _short, _text


@dataclass
class TrialResult:
    """What one trial's run folder says. Accuracies are fractions; missing values are ``None``."""

    name: str
    label: str
    params: dict
    folder: Path
    status: str = "not run"          # finished | early stop | diverged | unfinished | not run
    epochs_done: int = 0
    final_val_accuracy: float | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_accuracy: float | None = None
    epoch_seconds: float | None = None
    n_params: int | None = None
    rows: list = field(default_factory=list)  # metrics.json: one dict per epoch

    def final(self, key: str):
        """The last epoch's value of a metric (``train_cost``, ``val_accuracy``, ...), or None."""
        return self.rows[-1].get(key) if self.rows else None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def count_parameters(folder: Path) -> int | None:
    """Trainable parameters of the model saved in a run folder (final model, else the best one)."""
    from ..io import read_model_info
    from ..engine.model import Sequential

    for name in ("model.safetensors", "best.safetensors"):
        if (folder / name).is_file():
            return Sequential.from_config(read_model_info(folder / name)["architecture"]).n_params
    return None


def read_result(trial: Trial, folder: str | Path) -> TrialResult:
    """Everything the tables need about ``trial``, read from its run folder ``folder``."""
    folder = Path(folder)
    result = TrialResult(trial.name, trial.label, dict(trial.params), folder)
    if not folder.is_dir():
        return result
    result.rows = _read_json(folder / "metrics.json") or []
    summary = _read_json(folder / "summary.json") or {}
    marker = _read_json(folder / "trial.json") or {}
    reason = summary.get("stop_reason")
    if reason in ("completed", "early_stop"):
        result.status = "finished" if reason == "completed" else "early stop"
    elif marker.get("status") == "diverged":
        result.status = "diverged"
    else:
        result.status = "unfinished"
    result.epochs_done = len(result.rows)
    vals = [(r["epoch"], r["val_accuracy"]) for r in result.rows if r.get("val_accuracy") is not None]
    if vals:
        result.final_val_accuracy = vals[-1][1]
        result.best_epoch, result.best_val_accuracy = max(vals, key=lambda p: p[1])  # first epoch on ties
    result.test_accuracy = summary.get("test_accuracy")
    seconds = [r["seconds"] for r in result.rows if r.get("seconds") is not None]
    result.epoch_seconds = sum(seconds) / len(seconds) if seconds else None
    result.n_params = count_parameters(folder)
    return result


def collect(trials: list[Trial], out: str | Path) -> list[TrialResult]:
    """:func:`read_result` for every trial of a sweep whose run folders are in ``out``."""
    return [read_result(t, Path(out) / t.name) for t in trials]


# -- tables ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A table column: ``key`` (CSV header), ``title`` (Markdown header) and how Markdown shows it."""

    key: str
    title: str
    kind: str = "text"  # text | percent | float | number | seconds | int
    markdown: bool = True  # False: in the CSV only (e.g. the run folder name)


def format_cell(value, kind: str) -> str:
    """A value as the Markdown table shows it (``None`` and NaN as an en dash)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "percent":
        return f"{100 * value:.2f}"
    if kind == "float":
        return f"{value:.4f}"
    if kind == "number":
        return f"{value:.4g}"
    if kind == "seconds":
        return f"{value:.2f}"
    if kind == "int":
        return f"{int(value):,}"
    return _text(value)


def markdown_table(columns: list[Column], rows: list[dict]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns are right-aligned."""
    columns = [c for c in columns if c.markdown]
    header = "| " + " | ".join(c.title for c in columns) + " |"
    rule = "| " + " | ".join("---:" if c.kind != "text" else "---" for c in columns) + " |"
    body = ["| " + " | ".join(format_cell(r.get(c.key), c.kind).replace("|", "\\|") for c in columns) + " |"
            for r in rows]
    return "\n".join([header, rule, *body]) + "\n"


def csv_text(columns: list[Column], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for r in rows:
        writer.writerow(["" if r.get(c.key) is None else r.get(c.key) for c in columns])
    return buffer.getvalue()


def write_table(stem: str | Path, columns: list[Column], rows: list[dict], title: str = "",
                notes: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (title, table, notes) and ``<stem>.csv`` atomically; returns both paths."""
    stem = Path(stem)
    md = stem.with_suffix(".md")
    text = (f"# {title}\n\n" if title else "") + markdown_table(columns, rows) + (f"\n{notes.strip()}\n" if notes else "")
    atomic.write_text(md, text)
    atomic.write_text(stem.with_suffix(".csv"), csv_text(columns, rows))
    return md, stem.with_suffix(".csv")


RESULT_COLUMNS = [
    Column("status", "status"),
    Column("epochs", "epochs", "int"),
    Column("final_val_accuracy", "final val acc (%)", "percent"),
    Column("best_val_accuracy", "best val acc (%)", "percent"),
    Column("best_epoch", "best epoch", "int"),
    Column("test_accuracy", "test acc (%)", "percent"),
    Column("epoch_seconds", "epoch time (s)", "seconds"),
    Column("params", "parameters", "int"),
]


def result_row(result: TrialResult) -> dict:
    """The standard columns of a trial (see :data:`RESULT_COLUMNS`), plus its name and parameters."""
    return {"trial": result.name, **result.params, "status": result.status, "epochs": result.epochs_done,
            "final_val_accuracy": result.final_val_accuracy, "best_val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch, "test_accuracy": result.test_accuracy,
            "epoch_seconds": result.epoch_seconds, "params": result.n_params}


def param_columns(results: list[TrialResult]) -> list[Column]:
    """One column per parameter varied by any trial, in order of first appearance."""
    keys: list[str] = []
    for r in results:
        keys += [k for k in r.params if k not in keys]
    return [Column(k, _short(k)) for k in keys]


def sweep_table(results: list[TrialResult]) -> tuple[list[Column], list[dict]]:
    """Columns and rows of a sweep's ``results`` table: parameters, then the standard columns."""
    columns = [Column("trial", "trial", markdown=False), *param_columns(results), *RESULT_COLUMNS]
    return columns, [result_row(r) for r in results]


# -- figures ---------------------------------------------------------------------------------------------------
def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global state); matplotlib imported here."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def series(rows: list[dict], key: str) -> tuple[list, list]:
    """(epochs, values) of a metric over the epochs where it was measured."""
    pairs = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def accuracy_curves_figure(results: list[TrialResult], key: str = "val_accuracy", title: str = ""):
    """Every trial's curve of ``key`` (validation accuracy by default) in one labelled figure."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(11, 5.5)
    ax = fig.subplots()
    markers = "os^vDP*Xh<>"
    for i, r in enumerate(results):
        epochs, values = series(r.rows, key)
        if epochs:
            ax.plot(epochs, [100 * v for v in values], marker=markers[i % len(markers)], ms=3, lw=1.3,
                    color=f"C{i % 10}", ls="-" if i < 10 else "--", label=r.label or r.name)
    ax.set(xlabel="epoch", ylabel=f"{key.replace('_', ' ')} (%)", title=title or key.replace("_", " "))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, f"no {key.replace('_', ' ')} recorded", ha="center", va="center", transform=ax.transAxes)
    return fig
