"""Reproduce the classic MNIST results (issue 4's table) and keep them in ``docs/results.md``.

Every row of the table is one or two training configurations run through :func:`cnnlab.training.runs.train_run`
(the same code as ``cnnlab train``), once per seed. The measured figures go to ``docs/results.json``;
``docs/results.md`` is rendered from it, so rows that were not run this time keep their previous
values, and rows never run say so.

Run from the project root::

    python benchmarks/reproduce.py --list                          # the rows and their settings
    python benchmarks/reproduce.py                                 # everything (hours of CPU)
    python benchmarks/reproduce.py --only lenet5 keras-mnist-b128 --runs 3
    python benchmarks/reproduce.py --only lenet5 --scale 0.1 --train-subset 2000 --out /tmp/smoke

``--scale`` multiplies the epochs and ``--train-subset`` trims the training set: a quick smoke run, not a
result. Such *reduced* runs write to ``<out>/results.json`` and ``.md`` unless ``--results`` names a
file, so they never overwrite the real table by accident; in any table they are marked "reduced".

Nielsen's networks train on 50,000 images and hold 10,000 out (``val_split = 10000``); every figure
reported here is the accuracy of the final model on the 10,000-image test set, mean over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cnnlab import atomic  # noqa: E402
from cnnlab.engine.errors import NumericalError  # noqa: E402
from cnnlab.training.config import TrainConfig  # noqa: E402

RESULTS = ROOT / "docs" / "results.json"
FORMAT_VERSION = 1

# Nielsen (network.py, network2.py): SGD on 50,000 images, batch 10, sigmoid units; quadratic cost or
# cross-entropy with sigmoid outputs (our binary-crossentropy); evaluated on 10,000 held-out images.
NIELSEN = dict(optimizer="sgd", batch_size=10, val_split=10000)
CH1 = dict(NIELSEN, loss="quadratic", lr=3.0, epochs=30, init="large")  # network.py draws weights from N(0, 1)
CH3 = dict(NIELSEN, loss="binary-crossentropy")
ADAM = dict(optimizer="adam", lr=1e-3)
TUNED = dict(ADAM, augment=True, schedule="cosine")


@dataclass
class Row:
    """One line of the table: its settings (one config, or two to compare), the reference figure, the target."""

    name: str
    setting: str
    reported: str
    target: str
    parts: dict[str, dict]  # part name -> TrainConfig options
    threshold: float | None = None  # mean test accuracy to reach; None: judged by `judge`
    judge: object = None  # callable(summaries by part) -> (passed, text)


def overfitting_judge(parts: dict[str, dict]) -> tuple[bool, str]:
    """Nielsen's picture: without L2 the network memorises the 1,000 images (training accuracy ~100%)
    while validation accuracy stalls far below; with λ = 0.1 the peak is higher and the gap smaller."""
    without, with_l2 = parts["without"], parts["with"]
    gap = lambda s: s["final_train_accuracy"] - s["final_val_accuracy"]  # noqa: E731
    checks = {
        "memorises without L2 (train >= 99%)": without["final_train_accuracy"] >= 0.99,
        "large gap without L2 (>= 10 points)": gap(without) >= 0.10,
        "higher peak with L2": with_l2["peak_val_accuracy"] > without["peak_val_accuracy"],
        "smaller gap with L2": gap(with_l2) < gap(without),
    }
    failed = [name for name, ok in checks.items() if not ok]
    return not failed, ("all four checks hold" if not failed else "not met: " + "; ".join(failed))


#: The from-scratch course network's reported summed epoch error (½‖a − y‖² summed over the 100 images).
COURSE_REPORTED_ERROR = [49.02, 46.83, 46.35, 45.91, 43.58, 37.59, 24.86, 19.70, 16.37, 13.07]
COURSE_IMAGES = 100


def course_judge(parts: dict[str, dict]) -> tuple[bool, str]:
    """The course's claim: the summed error falls more than 3x over the 10 epochs (49.02 -> 13.07)."""
    curve = parts["main"].get("summed_error_curve")
    if not curve:
        return False, "no error curve recorded"
    curve = list(curve)
    fall = curve[0] / curve[-1] if curve[-1] else float("inf")
    return fall > 3, f"summed error {curve[0]:.2f} -> {curve[-1]:.2f} ({fall:.1f}x down; reported 3.8x)"


ROWS = [
    Row("nielsen-30-quadratic", "MLP [784, 30, 10], sigmoid, quadratic cost, η = 3, batch 10, 30 epochs "
        "(weights N(0, 1) as network.py)", "94.9% (Nielsen: 95.4%)", "≥ 95.0%",
        {"main": dict(CH1, arch="mlp:784-30-10")}, threshold=0.950),
    Row("nielsen-100-quadratic", "MLP [784, 100, 10], same", "96.6%", "≥ 96.3%",
        {"main": dict(CH1, arch="mlp:784-100-10")}, threshold=0.963),
    Row("nielsen-30-crossentropy-l2", "MLP [784, 30, 10], cross-entropy, η = 0.5, λ = 5, batch 10, 30 epochs, "
        "init 1/√n_in", "96.5%", "≥ 96.2%",
        {"main": dict(CH3, arch="mlp:784-30-10", lr=0.5, lmbda=5.0, epochs=30, init="default")}, threshold=0.962),
    Row("nielsen-100-crossentropy-l2", "MLP [784, 100, 10], cross-entropy, η = 0.1, λ = 5, batch 10, 60 epochs",
        "98.0% (validation)", "≥ 97.8% (test)",
        {"main": dict(CH3, arch="mlp:784-100-10", lr=0.1, lmbda=5.0, epochs=60, init="default")}, threshold=0.978),
    Row("nielsen-overfitting", "MLP [784, 30, 10], first 1,000 training images, cross-entropy, η = 0.5, "
        "batch 10, 400 epochs, without / with λ = 0.1 (weights N(0, 1) as in the book)", "84% / 88% (peak)",
        "overfitting without, less with",
        {"without": dict(CH3, arch="mlp:784-30-10", lr=0.5, epochs=400, train_subset=1000, init="large"),
         "with": dict(CH3, arch="mlp:784-30-10", lr=0.5, epochs=400, train_subset=1000, init="large", lmbda=0.1)},
        judge=overfitting_judge),
    Row("keras-mnist-b1000", "`keras-mnist`, Adam, batch 1000, 10 epochs", "98.6%", "≥ 98.6%",
        {"main": dict(ADAM, arch="keras-mnist", batch_size=1000, epochs=10)}, threshold=0.986),
    Row("keras-mnist-b128", "`keras-mnist`, Adam, batch 128, 15 epochs (its usual recipe)", "~99%", "≥ 99.0%",
        {"main": dict(ADAM, arch="keras-mnist", batch_size=128, epochs=15)}, threshold=0.990),
    Row("lenet5", "`lenet5` (tanh, average pooling), Adam lr 1e-3, batch 100, 10 epochs, inputs standardized",
        "98–99% (LeCun 1998: 99.05%)", "≥ 99.0%",
        {"main": dict(ADAM, arch="lenet5", batch_size=100, epochs=10, standardize=True)}, threshold=0.990),
    Row("lenet5-tuned", "`lenet5` with ReLU and max pooling, Adam lr 1e-3, batch 100, 30 epochs, augmentation, "
        "cosine schedule, inputs standardized, 5,000 held out", "target 99.2%", "≥ 99.2%",
        {"main": dict(TUNED, arch="lenet5", activation="relu", pooling="max", batch_size=100, epochs=30,
                      standardize=True, val_split=5000)},
        threshold=0.992),
    Row("vgg-mini-tuned", "`vgg-mini` (ReLU, max pooling), Adam lr 1e-3, batch 100, 20 epochs, augmentation, "
        "cosine schedule", "\"up to 99.5%\"", "≥ 99.4%",
        {"main": dict(TUNED, arch="vgg-mini", batch_size=100, epochs=20)}, threshold=0.994),
    Row("cnn-bn-best", "`cnn-bn` (batch norm, dropout), Adam lr 1e-3, batch 100, 20 epochs, augmentation, "
        "cosine schedule, 5,000 held out", "classic CNN + distortions: 99.6%", "≥ 99.6%",
        {"main": dict(TUNED, arch="cnn-bn", batch_size=100, epochs=20, val_split=5000)}, threshold=0.996),
    Row("course-scratch", "The from-scratch course CNN (`course-cnn`: (conv 16@3×3 → ReLU) ×2 → maxpool → (conv "
        "32@3×3 → ReLU) ×2 → maxpool → dense 128 sigmoid → dense 10 sigmoid, weights and conv biases U(−0.1, "
        "0.1), dense biases 0.1), quadratic cost, SGD η = 0.4, batch 1, the first 100 training images, 10 epochs",
        "summed error 49.02 → 13.07", "error falls > 3×",
        {"main": dict(arch="course-cnn", loss="quadratic", optimizer="sgd", lr=0.4, batch_size=1, epochs=10,
                      val_split=0, train_subset=COURSE_IMAGES)},
        judge=course_judge),
    Row("course-cnn-60k", "The same course CNN trained properly: all 60,000 training images, 10 epochs, "
        "otherwise the same recipe (quadratic cost, SGD η = 0.4, batch 1), every epoch trained even at chance",
        "\"can reach up to 99.5%\"", "≥ 99.5%",
        {"main": dict(arch="course-cnn", loss="quadratic", optimizer="sgd", lr=0.4, batch_size=1, epochs=10,
                      val_split=0, stop_when_stuck=False)}, threshold=0.995),
    Row("fashion-lenet5", "Fashion-MNIST, `lenet5` with ReLU and max pooling, Adam lr 1e-3, batch 100, "
        "20 epochs, cosine schedule", "—", "≥ 90%",
        {"main": dict(ADAM, arch="lenet5", dataset="fashion-mnist", activation="relu", pooling="max",
                      batch_size=100, epochs=20, schedule="cosine")}, threshold=0.90),
    Row("fashion-vgg-mini", "Fashion-MNIST, `vgg-mini`, Adam lr 1e-3, batch 100, 20 epochs, cosine schedule",
        "—", "≥ 92%",
        {"main": dict(ADAM, arch="vgg-mini", dataset="fashion-mnist", batch_size=100, epochs=20,
                      schedule="cosine")}, threshold=0.92),
]
ROWS_BY_NAME = {row.name: row for row in ROWS}


# -- configs and commands ----------------------------------------------------------------------------------
def make_config(options: dict, *, seed: int, scale: float, train_subset: int | None, out: str, name: str,
                data_dir: str | None, progress: bool) -> TrainConfig:
    """The TrainConfig of one part of a row for one seed, with the smoke-run reductions applied."""
    options = dict(options)
    options["epochs"] = max(1, round(options.get("epochs", 10) * scale))
    if train_subset:
        options["train_subset"] = min(train_subset, options.get("train_subset") or train_subset)
    return TrainConfig(**options, seed=seed, out=out, name=name, data_dir=data_dir, progress=progress)


_CLI_FLAGS = [("arch", "--arch"), ("dataset", "--dataset"), ("activation", "--activation"), ("pooling", "--pooling"),
              ("init", "--init"), ("loss", "--loss"), ("optimizer", "--optimizer"), ("lr", "--lr"),
              ("momentum", "--momentum"), ("lmbda", "--lambda"), ("batch_size", "--batch-size"),
              ("epochs", "--epochs"), ("schedule", "--schedule"), ("val_split", "--val-split"),
              ("train_subset", "--train-subset")]


def train_command(options: dict, seed: int = 0) -> str:
    """The ``cnnlab train`` command line that trains the same configuration."""
    words = ["cnnlab train"]
    for key, flag in _CLI_FLAGS:
        if options.get(key) is not None:
            words.append(f"{flag} {options[key]:g}" if isinstance(options[key], float) else f"{flag} {options[key]}")
    for switch in ("augment", "standardize"):
        if options.get(switch):
            words.append(f"--{switch}")
    if options.get("stop_when_stuck") is False:
        words.append("--keep-going-when-stuck")
    words.append(f"--seed {seed}")
    return " ".join(words)


# -- running -------------------------------------------------------------------------------------------------
def part_summary(history, summary: dict) -> dict:
    """What we keep of one training run: final/peak accuracies, curves, time."""
    rows = history.rows
    val = [r.get("val_accuracy") for r in rows]
    scored = [(a, r["epoch"]) for a, r in zip(val, rows) if a is not None]
    peak, peak_epoch = max(scored, key=lambda p: (p[0], -p[1])) if scored else (None, None)
    last = rows[-1] if rows else {}
    return {
        "test_accuracy": summary.get("test_accuracy"),
        "final_train_accuracy": last.get("train_accuracy"),
        "final_val_accuracy": last.get("val_accuracy"),
        "peak_val_accuracy": peak,
        "peak_epoch": peak_epoch,
        "epochs": len(rows),
        "stop_reason": summary.get("stop_reason"),
        "train_curve": [None if r.get("train_accuracy") is None else round(r["train_accuracy"], 5) for r in rows],
        "train_cost_curve": [None if r.get("train_cost") is None else round(r["train_cost"], 6) for r in rows],
        "epoch_seconds": [round(r["seconds"], 3) for r in rows if r.get("seconds") is not None],
        "val_curve": [None if a is None else round(a, 5) for a in val],
    }


def peer_step(peer: str | None):
    """The ``step_with`` of :func:`cnnlab.training.loop.fit` for ``--peer`` (None: cnnlab's own step)."""
    if peer is None:
        return None
    from cnnlab.interop.torch_step import TorchStep

    return TorchStep


def run_row(row: Row, args, echo=print) -> dict:
    """Train every part of ``row`` for every seed (with PyTorch computing the steps under ``--peer torch``);
    returns its results entry."""
    from cnnlab.training.runs import train_run

    peer = getattr(args, "peer", None)
    runs = []
    for k in range(args.runs):
        seed = args.seed + k
        record = {"seed": seed, "parts": {}, "seconds": 0.0}
        for part, options in row.parts.items():
            label = (row.name if part == "main" else f"{row.name}-{part}") + (f"-{peer}" if peer else "")
            config = make_config(options, seed=seed, scale=args.scale, train_subset=args.train_subset,
                                 out=str(args.out), name=f"{label}-seed{seed}", data_dir=args.data_dir,
                                 progress=args.progress)
            engine = f" (steps computed by {peer})" if peer else ""
            echo(f"\n=== {label}, seed {seed}: {train_command(config.to_dict(), seed)}{engine}")
            start = time.perf_counter()
            try:
                run, history, _ = train_run(config, echo=echo, step_with=peer_step(peer))
            except NumericalError as exc:  # a recipe that diverges or gets stuck: that is its result
                run, history = exc.run, exc.history
                echo(f"training stopped: {exc}")
            seconds = time.perf_counter() - start
            summary = json.loads((run.path / "summary.json").read_text())
            record["parts"][part] = {**part_summary(history, summary), "seconds": round(seconds, 1),
                                     "run": str(run.path)}
            if "error" in summary:  # stopped: why, in the row
                record["parts"][part]["error"] = summary["error"]
            record["seconds"] = round(record["seconds"] + seconds, 1)
        runs.append(record)
    return {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "runs": runs,
        "scale": args.scale,
        "train_subset": args.train_subset,
        "settings": settings_key(row),
        "command": reproduce_command(row.name, args, [r["seed"] for r in runs]),
        **({"engine": peer} if peer else {}),
    }


def settings_key(row: Row) -> str:
    """The row's training options as canonical JSON: runs may only be pooled when these are equal."""
    return json.dumps(row.parts, sort_keys=True)


def add_seeds(previous: dict | None, entry: dict, row: Row, args) -> dict:
    """``entry``'s runs added to ``previous``'s (``--add-seeds``): one entry over all the seeds.

    Refused (``ValueError``) when there is nothing to add to, when the settings, ``--scale`` or
    ``--train-subset`` differ, or when a seed was measured already. Entries stored before the settings
    were recorded with them cannot be checked, so they are refused too.
    """
    if previous is None:
        raise ValueError(f"{row.name}: --add-seeds needs earlier runs of this row, and there are none")
    if "settings" not in previous:
        raise ValueError(f"{row.name}: its stored runs predate recorded settings, so they cannot be checked "
                         "against the row's; run it anew (--runs K)")
    if previous["settings"] != entry["settings"]:
        raise ValueError(f"{row.name}: the row's settings changed since its earlier runs; run it anew")
    if (previous.get("scale"), previous.get("train_subset")) != (entry["scale"], entry["train_subset"]):
        raise ValueError(f"{row.name}: --scale/--train-subset differ from the earlier runs'")
    seeds = [r["seed"] for r in previous["runs"]] + [r["seed"] for r in entry["runs"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{row.name}: seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} "
                         "were measured already; choose others with --seed")
    runs = sorted(previous["runs"] + entry["runs"], key=lambda r: r["seed"])
    return {**entry, "runs": runs, "command": reproduce_command(row.name, args, [r["seed"] for r in runs])}


def reproduce_command(name: str, args, seeds: list[int]) -> str:
    """The command that measures ``seeds`` of row ``name``: ``--runs N --seed S`` when they are
    consecutive; otherwise that for the first run of consecutive seeds, and the rest named after it."""
    words = ["python benchmarks/reproduce.py --only", name]
    seeds = sorted(seeds)
    first, count = seeds[0], 1
    while count < len(seeds) and seeds[count] == first + count:
        count += 1
    if count != 1:
        words.append(f"--runs {count}")
    if first:
        words.append(f"--seed {first}")
    if count < len(seeds):
        words.append("(then --add-seeds with seeds " + ", ".join(str(s) for s in seeds[count:]) + ")")
    if args.scale != 1:
        words.append(f"--scale {args.scale:g}")
    if args.train_subset:
        words.append(f"--train-subset {args.train_subset}")
    if getattr(args, "peer", None):
        words.append(f"--peer {args.peer}")
    return " ".join(words)


# -- results: storing, judging, rendering ------------------------------------------------------------------
def load_results(path: Path) -> dict:
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") == FORMAT_VERSION:
            return data
    return {"version": FORMAT_VERSION, "rows": {}}


def stored_rows(results: dict, peer: str | None) -> dict:
    """The entries of cnnlab's runs (``peer`` None) or of a peer's (``results["peers"][peer]``), by row name."""
    return results["rows"] if peer is None else results.setdefault("peers", {}).setdefault(peer, {})


def save_results(results: dict, path: Path) -> None:
    """Write ``results.json`` and the Markdown table beside it (``results.md``), atomically."""
    atomic.write_text(path, json.dumps(results, indent=1) + "\n")
    atomic.write_text(path.with_suffix(".md"), render(results))


def _mean_spread(values: list[float]) -> tuple[float, float, float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0,
            min(values), max(values))


def _pct(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def _accuracy_text(values: list[float]) -> str:
    mean, std, low, high = _mean_spread(values)
    if len(values) == 1:
        return _pct(mean)
    return f"{_pct(mean)} ± {100 * std:.2f} (min {_pct(low)}, max {_pct(high)})"


def judge(row: Row, entry: dict) -> tuple[str, str, bool | None]:
    """``(ours, verdict text, passed)`` of a results entry (mean over seeds)."""
    runs = entry["runs"]
    reduced = entry.get("scale", 1) != 1 or bool(entry.get("train_subset"))
    if row.threshold is not None:
        values = [r["parts"]["main"]["test_accuracy"] for r in runs
                  if r["parts"]["main"].get("test_accuracy") is not None]
        if not values:
            stopped = [r["parts"]["main"]["error"] for r in runs if r["parts"]["main"].get("error")]
            return (f"training stopped: {stopped[0]}" if stopped else "no test accuracy"), "fail", False
        ours = _accuracy_text(values)
        passed = statistics.fmean(values) >= row.threshold
        verdict = "pass" if passed else "fail"
    else:
        means = {}
        for part in row.parts:
            keys = ("peak_val_accuracy", "final_train_accuracy", "final_val_accuracy", "test_accuracy")
            means[part] = {k: statistics.fmean([r["parts"][part][k] for r in runs]) for k in keys
                           if all(r["parts"][part].get(k) is not None for r in runs)}
            curves = [r["parts"][part].get("train_cost_curve") for r in runs]
            if curves and all(curves):
                means[part]["summed_error_curve"] = [COURSE_IMAGES * statistics.fmean(epoch) for epoch in zip(*curves)]
        passed, text = row.judge(means)
        if row.name == "course-scratch":
            tests = [r["parts"]["main"]["test_accuracy"] for r in runs if r["parts"]["main"].get("test_accuracy")]
            ours = f"{text}; test accuracy {_accuracy_text(tests)}" if tests else text
        else:
            ours = " / ".join(f"{_pct(means[p].get('peak_val_accuracy'))}" for p in row.parts) + " (peak validation); " \
                + "training " + " / ".join(_pct(means[p].get("final_train_accuracy")) for p in row.parts) + " at the end"
        verdict = ("pass" if passed else "fail") + f": {text}"
    if reduced:
        verdict = f"({verdict}; reduced run, not a result)"
        ours += f" — reduced: epochs × {entry.get('scale', 1):g}" + (
            f", {entry['train_subset']:,} training images" if entry.get("train_subset") else "")
    return ours, verdict, passed


#: cnnlab's mean test accuracy must be within this many percentage points of PyTorch's on the same recipe.
AGREEMENT_PP = 0.15


def _mean_test_accuracy(entry: dict, seeds: set[int]) -> float | None:
    values = [r["parts"]["main"].get("test_accuracy") for r in entry["runs"] if r["seed"] in seeds]
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def peer_cells(row: Row, entry: dict | None, peer: dict | None) -> tuple[str, str]:
    """The "PyTorch here" cell (its figure, whether it reaches the target) and the engine check: cnnlab's
    mean test accuracy minus PyTorch's over the seeds both have run, in percentage points, against
    :data:`AGREEMENT_PP`."""
    if peer is None:
        return "no run yet", "—"
    text, _, passed = judge(row, peer)
    text += f" ({'reaches' if passed else 'misses'} the target; seeds {', '.join(str(r['seed']) for r in peer['runs'])})"
    common = {r["seed"] for r in peer["runs"]} & {r["seed"] for r in (entry or {}).get("runs", [])}
    ours, theirs = (_mean_test_accuracy(entry, common), _mean_test_accuracy(peer, common)) if common else (None, None)
    if ours is None or theirs is None:
        return text, "—"
    gap = 100 * (ours - theirs)
    verdict = f"{gap:+.2f} pp: {'agree' if abs(gap) <= AGREEMENT_PP else 'differ'}"
    if common != {r["seed"] for r in entry["runs"]}:
        verdict += f" (seeds {', '.join(str(s) for s in sorted(common))})"
    return text, verdict


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _curve_line(label: str, entry: dict | None) -> str | None:
    """One line of the course table: the summed error per epoch, mean ± sd over the entry's seeds."""
    curves = [[COURSE_IMAGES * c for c in r["parts"]["main"]["train_cost_curve"]] for r in (entry or {}).get("runs", [])
              if r["parts"]["main"].get("train_cost_curve")]
    if not curves:
        return None
    cells = []
    for values in zip(*curves):
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.fmean(values):.2f} ± {sd:.2f}" if len(values) > 1 else f"{values[0]:.2f}")
    return f"| {label} | " + " | ".join(cells) + " |"


def render(results: dict) -> str:
    """The Markdown page: the table (one line per row of ROWS), then the commands and the method."""
    lines = [
        "# Classic results, reproduced",
        "",
        "Generated by `benchmarks/reproduce.py` from `results.json` beside it — do not edit by hand. "
        "\"ours\" is the accuracy of the final model on the 10,000-image test set (MNIST unless noted), mean "
        "over the seeds (± standard deviation, min, max when there are several); \"pass\" compares that mean "
        "with the target. \"PyTorch here\" is the same recipe trained by PyTorch on this machine (`--peer torch`: "
        "the same initial weights, batches, augmentation and schedule, PyTorch computing every step), and the "
        "engine check is cnnlab's mean minus PyTorch's. Time is the wall-clock time of one run (training, validation, test) on the machine "
        "that measured it. See [reproduce.md](reproduce.md) for how to run it.",
        "",
        "| setting | reported | PyTorch here | ours (cnnlab here) | target | pass | cnnlab − PyTorch "
        f"(agree within {AGREEMENT_PP:g} pp) | time per run | seeds | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    stored = results.get("rows", {})
    peers = results.get("peers", {}).get("torch", {})
    for row in ROWS:
        entry, peer = stored.get(row.name), peers.get(row.name)
        command = f"`python benchmarks/reproduce.py --only {row.name}`"
        peer_text, check = peer_cells(row, entry, peer)
        if entry is None:
            lines.append(f"| {row.setting} | {row.reported} | {peer_text} | not run yet | {row.target} | — | {check} "
                         f"| — | — | {command} |")
            continue
        ours, verdict, _ = judge(row, entry)
        seconds = _duration(statistics.fmean([r["seconds"] for r in entry["runs"]]))
        if peer is not None:
            seconds += f" (PyTorch {_duration(statistics.fmean([r['seconds'] for r in peer['runs']]))})"
        seeds = ", ".join(str(r["seed"]) for r in entry["runs"])
        commands = f"`{entry['command']}` (measured {entry['measured']})" + (
            f"; `{peer['command']}` (measured {peer['measured']})" if peer is not None else "")
        lines.append(f"| {row.setting} | {row.reported} | {peer_text} | {ours} | {row.target} | {verdict} | {check} "
                     f"| {seconds} | {seeds} | {commands} |")
    course = stored.get("course-scratch")
    if course:
        curves = [r for r in course["runs"] if r["parts"]["main"].get("train_cost_curve")]
        per_epoch = [statistics.fmean(r["parts"]["main"]["seconds"] / max(r["parts"]["main"]["epochs"], 1)
                                      for r in course["runs"])]
        lines += ["", "## The from-scratch course recipe, epoch by epoch", "",
                  f"Summed error Σ ½‖a − y‖² over the {COURSE_IMAGES} training images after each epoch: the "
                  f"course's printout beside ours (and PyTorch's, same batches, when run; mean ± sd over {len(curves)} seed(s)); "
                  f"{per_epoch[0]:.1f} s per epoch here (including the test pass, spread over the epochs).", "",
                  "| epoch | " + " | ".join(str(e + 1) for e in range(len(COURSE_REPORTED_ERROR))) + " |",
                  "| --- |" + " --- |" * len(COURSE_REPORTED_ERROR),
                  "| reported | " + " | ".join(f"{v:.2f}" for v in COURSE_REPORTED_ERROR) + " |"]
        for label, source in (("cnnlab", course), ("PyTorch", peers.get("course-scratch"))):
            line = _curve_line(label, source)
            if line:
                lines.append(line)
    lines += ["", "## The same runs with `cnnlab train`", "",
              "Each setting is one `cnnlab train` command (seed 0 shown; the script adds `--out` and `--name`):", ""]
    for row in ROWS:
        for part, options in row.parts.items():
            label = row.name if part == "main" else f"{row.name} ({part})"
            lines.append(f"- **{label}**: `{train_command(options)}`")
    lines += ["", "## Method", "",
              "- Nielsen's networks hold out 10,000 of the 60,000 training images (his 50,000 / 10,000 split, "
              "drawn with the seed) and use SGD with batch 10; his \"cross-entropy\" is our "
              "`binary-crossentropy` on sigmoid outputs, and λ is the classic L2 parameter "
              "(weight decay λ / n_train).",
              "- The CNN rows hold out 10% of the training images (5,000 for `cnn-bn-best`) for validation.",
              "- The overfitting row passes when, averaged over the seeds: without L2 the training accuracy "
              "reaches 99% and stays at least 10 points above the validation accuracy; with λ = 0.1 the peak "
              "validation accuracy is higher and the gap smaller.",
              "- Augmentation is `--augment` with its defaults (rotation ±15°, shift ±2 px, zoom ±10%).",
              ""]
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these rows (see --list)")
    parser.add_argument("--list", action="store_true", help="list the rows and their settings, run nothing")
    parser.add_argument("--runs", type=int, default=1, help="seeds per row (mean and spread reported)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; runs use seed, seed+1, ...")
    parser.add_argument("--add-seeds", action="store_true",
                        help="add these runs to the row's earlier ones (same settings, new seeds) instead of "
                             "replacing them")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row's epochs (smoke runs)")
    parser.add_argument("--train-subset", type=int, help="train on at most N images (smoke runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduce", help="folder for the run folders")
    parser.add_argument("--results", type=Path,
                        help="results JSON to update (default docs/results.json; <out>/results.json for reduced runs)")
    parser.add_argument("--data-dir", help="data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    parser.add_argument("--peer", choices=["torch"],
                        help="train the same recipes with PyTorch computing every step (same initial weights, "
                             "batches and schedule: cnnlab.interop.torch_step); stored as the row's PyTorch column")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.scale <= 0 or (args.train_subset is not None and args.train_subset < 1):
        parser.error("--runs and --train-subset must be >= 1 and --scale > 0")
    unknown = sorted(set(args.only or ()) - set(ROWS_BY_NAME))
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; expected some of: {', '.join(ROWS_BY_NAME)}")
    return args


def main(argv=None, echo=print) -> int:
    args = parse_args(argv)
    if args.list:
        for row in ROWS:
            echo(f"{row.name:<30}{row.setting}  [target {row.target}]")
        return 0
    reduced = args.scale != 1 or bool(args.train_subset)
    path = args.results or (Path(args.out) / "results.json" if reduced else RESULTS)
    rows = [ROWS_BY_NAME[name] for name in args.only] if args.only else ROWS
    if args.add_seeds:  # refuse now rather than after hours of training
        earlier = stored_rows(load_results(path), args.peer)
        for row in rows:
            try:
                add_seeds(earlier.get(row.name), {"settings": settings_key(row), "scale": args.scale,
                                                  "train_subset": args.train_subset,
                                                  "runs": [{"seed": args.seed + k} for k in range(args.runs)]},
                          row, args)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
    for row in rows:
        entry = run_row(row, args, echo)
        # Read the file again: another reproduction may have stored rows while this one trained.
        results = load_results(path)
        rows_of_engine = stored_rows(results, args.peer)
        if args.add_seeds:
            try:
                entry = add_seeds(rows_of_engine.get(row.name), entry, row, args)
            except ValueError as exc:  # the stored row changed while this one trained: keep both apart
                aside = path.with_name(f"{path.stem}.{row.name}.not-added.json")
                atomic.write_text(aside, json.dumps(entry, indent=1) + "\n")
                print(f"error: {exc}; these runs are kept in {aside}", file=sys.stderr)
                return 2
        rows_of_engine[row.name] = entry
        save_results(results, path)  # after every row: an interrupted reproduction keeps what it measured
        ours, verdict, _ = judge(row, entry)
        echo(f"--- {row.name}{f' ({args.peer})' if args.peer else ''}: {ours} (target {row.target}): {verdict}")
    echo(f"\nwrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
