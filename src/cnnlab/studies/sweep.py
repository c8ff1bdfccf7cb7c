"""Run many trials: in parallel processes on this machine, or as Ray tasks on a cluster; resume after a stop.

Each trial is one ordinary training run (:func:`cnnlab.training.runs.train_run`) with its own run folder
``<out>/<trial name>``. Before anything runs, every trial's folder is inspected:

* no folder                                     -> ``new``: train from scratch;
* ``summary.json`` says completed (or stopped early) -> ``done``: skipped;
* ``trial.json`` says the loss diverged           -> ``diverged``: skipped (it would diverge again);
* a checkpoint but no finished summary           -> ``resume``: continue from the last complete epoch.

So an interrupted sweep (Ctrl-C, a reboot, a killed job) is simply run again with the same command.
A folder whose saved options differ from the trial's is an error rather than a silent mix of two
experiments.

Parallel trials are separate *processes* (the engine is NumPy: threads would fight over the GIL
between BLAS calls), started with the ``spawn`` method so that no half-initialised BLAS thread pool is
inherited. Each worker may use ``cores / jobs`` threads: the ``*_NUM_THREADS`` variables (BLAS) and
``CNNLAB_THREADS`` (the data-parallel training step, :func:`cnnlab.threads.default_threads`) are
set in the environment the workers are started with, before they import NumPy — otherwise ``jobs``
processes times ``cores`` threads each would oversubscribe the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..engine.errors import CnnlabError, ConfigError
from .grid import Trial

FINISHED = ("completed", "early_stop")
EXECUTORS = ("local", "ray")
#: Thread counts set for the workers: BLAS / OpenMP libraries, and cnnlab's own (``cnnlab.threads``).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "CNNLAB_THREADS")
#: Options that may differ between a trial and the folder it resumes: they change no result.
IGNORED_ON_RESUME = ("epochs", "progress", "test", "out", "name", "data_dir")


@dataclass
class TrialOutcome:
    """What happened to one trial in this invocation: ``state`` before, ``status`` after."""

    trial: Trial
    folder: Path
    state: str          # new | resume | done | diverged
    status: str = ""    # finished | skipped | diverged | failed | interrupted
    error: str = ""
    seconds: float = 0.0


def core_count() -> int:
    """CPU cores this process may use (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


# -- where each trial stands ---------------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def trial_state(folder: Path, trial: Trial) -> str:
    """``new``, ``resume``, ``done`` or ``diverged`` for the trial whose run folder is ``folder``."""
    if not folder.is_dir():
        return "new"
    summary = _read_json(folder / "summary.json") or {}
    if summary.get("stop_reason") in FINISHED and (
            summary.get("stop_reason") == "early_stop" or summary.get("epochs_done", 0) >= trial.config.epochs):
        return "done"
    if (_read_json(folder / "trial.json") or {}).get("status") == "diverged":
        return "diverged"
    if (folder / "checkpoint.safetensors").is_file() and (folder / "config.json").is_file():
        return "resume"
    return "new"  # a folder left before the first checkpoint: nothing worth keeping


def check_same_options(folder: Path, trial: Trial) -> None:
    """Raise :class:`ConfigError` when ``folder`` was trained with options other than ``trial``'s."""
    saved = (_read_json(folder / "config.json") or {}).get("config")
    if saved is None:
        return
    wanted = trial.config.to_dict()
    differ = sorted(k for k in wanted if k not in IGNORED_ON_RESUME and k in saved and saved[k] != wanted[k])
    if differ:
        details = ", ".join(f"{k}: {saved[k]!r} there, {wanted[k]!r} now" for k in differ)
        raise ConfigError(f"{folder} holds trial {trial.name!r} trained with other options ({details}); "
                          f"use another --out folder or delete that run folder")


def plan(trials: list[Trial], out: Path) -> list[TrialOutcome]:
    """Each trial with its run folder and state; raises before any training if a folder does not match."""
    outcomes = []
    for trial in trials:
        folder = out / trial.name
        state = trial_state(folder, trial)
        if state != "new":
            check_same_options(folder, trial)
        outcomes.append(TrialOutcome(trial, folder, state))
    return outcomes


# -- one trial (runs in a worker process or a Ray task) -------------------------------------------------------
def execute_trial(payload: dict) -> dict:
    """Train one trial; ``payload`` is plain data (it crosses process and machine boundaries).

    ``payload``: ``config`` (a TrainConfig as a dict, with ``out`` and ``name`` set), ``resume`` (the run
    folder to continue, or None), ``log`` (a file receiving the trial's output, or None: print), and
    ``threads`` (BLAS and model threads, or None: leave as is). Returns ``{"status", "error", "seconds"}``.
    User errors and divergence are results, not exceptions, so one bad trial never stops the others.
    """
    from ..training.config import TrainConfig
    from ..engine.errors import NumericalError
    from ..training.runs import train_run

    _limit_threads(payload.get("threads"))
    start = time.perf_counter()
    config = TrainConfig.from_dict(payload["config"])
    folder = Path(config.out) / config.name
    with _output_to(payload.get("log")):
        if payload.get("resume") is None and folder.exists():
            shutil.rmtree(folder)  # started but never checkpointed (see trial_state)
        try:
            _, history, _ = train_run(config, resume=payload.get("resume"))
            status, error = ("interrupted" if history.stop_reason == "interrupted" else "finished"), ""
        except NumericalError as exc:
            status, error = "diverged", str(exc)
            print(f"trial diverged: {exc}")
        except CnnlabError as exc:
            status, error = "failed", str(exc)
            print(f"trial failed: {exc}")
    if folder.is_dir():
        atomic.write_text(folder / "trial.json", json.dumps(
            {"name": config.name, "params": payload.get("params", {}), "status": status, "error": error},
            indent=2, default=str) + "\n")
    return {"status": status, "error": error, "seconds": round(time.perf_counter() - start, 3)}


def _limit_threads(threads: int | None) -> None:
    """Limit this process to ``threads`` threads, also when it has already imported NumPy (Ray workers):
    ``CNNLAB_THREADS`` for the models it builds, and BLAS through threadpoolctl when installed."""
    if not threads:
        return
    os.environ["CNNLAB_THREADS"] = str(int(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set at start-up are then all we have
        return
    threadpool_limits(int(threads))


@contextlib.contextmanager
def _output_to(log: str | None):
    """Send what a trial prints (epoch lines, messages) to ``log``, so parallel trials do not interleave."""
    if log is None:
        yield
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", buffering=1) as fh, \
            contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield


@contextlib.contextmanager
def _thread_environment(threads: int):
    """Set the BLAS thread variables for processes started inside the block, then restore them."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- executors: yield (index, result) as trials finish ---------------------------------------------------------
def run_local(payloads: list[dict], jobs: int):
    """Run the payloads in ``jobs`` worker processes (in this process when ``jobs`` is 1)."""
    if jobs <= 1:
        for i, payload in enumerate(payloads):
            result = execute_trial(payload)
            yield i, result
            if result["status"] == "interrupted":  # Ctrl-C stopped that trial (saved): stop the sweep too
                raise KeyboardInterrupt
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, core_count() // jobs)
    with _thread_environment(threads):
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(execute_trial, {**p, "threads": threads}): i for i, p in enumerate(payloads)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield futures[future], _result_of(future.result)
        finally:
            # On Ctrl-C the workers got the signal too: each saves its run folder and returns.
            pool.shutdown(wait=True, cancel_futures=True)


def run_ray(payloads: list[dict], jobs: int, address: str | None = None, cpus_per_trial: int | None = None):
    """Run the payloads as Ray tasks: on a local Ray instance (``address`` None) or on a cluster.

    Locally, Ray is started with ``jobs`` CPUs and each trial asks for ``cores / jobs`` of them; on a
    cluster each trial asks for ``cpus_per_trial`` CPUs (default 1) and Ray places them. The run folders
    are written by the worker that trains: on a cluster ``--out`` must be a folder every node sees.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        options = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            ray.init(num_cpus=jobs, **options)
        else:
            ray.init(address=address, **options)
        started = True
    try:
        cpus = cpus_per_trial or (1 if address else max(1, core_count() // jobs))
        task = ray.remote(execute_trial).options(num_cpus=cpus, max_retries=0)
        refs = {task.remote({**p, "threads": cpus}): i for i, p in enumerate(payloads)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield refs[done[0]], _result_of(lambda: ray.get(done[0]))
    finally:
        if started:
            ray.shutdown()


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed; install it with "
                          "`pip install 'cnnlab[ray]'` (or `pip install ray`), or use --executor local") from None
    return ray


def _result_of(get) -> dict:
    """The result of a finished task; an unexpected exception (a bug, a lost worker) becomes a failure."""
    try:
        return get()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per trial, the sweep goes on
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}


# -- the whole thing ---------------------------------------------------------------------------------------------
def check_executor_options(executor: str, jobs, address: str | None, cpus_per_trial=None) -> None:
    """Raise :class:`ConfigError` for options no executor can run with (before anything is written)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}")
    for name, value in (("jobs", jobs), ("cpus_per_trial", cpus_per_trial)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, received {value!r}")
    if address is not None and executor != "ray":
        raise ConfigError(f"--address {address} is for --executor ray, received --executor {executor}")


def run_trials(trials: list[Trial], out: str | os.PathLike, *, jobs: int | None = None, executor: str = "local",
               address: str | None = None, cpus_per_trial: int | None = None, echo=print) -> list[TrialOutcome]:
    """Run (or resume, or skip) every trial; each gets the run folder ``out/<trial.name>``.

    Returns one :class:`TrialOutcome` per trial, in the order given. Trial output goes to
    ``out/logs/<name>.log`` when trials run in parallel (or on Ray), to the terminal otherwise.
    """
    check_executor_options(executor, jobs, address, cpus_per_trial)
    out = Path(out)
    outcomes = plan(trials, out)
    todo = [o for o in outcomes if o.state in ("new", "resume")]
    for o in outcomes:
        if o.state in ("done", "diverged"):
            o.status = "skipped" if o.state == "done" else "diverged"
    skipped = len(outcomes) - len(todo)
    jobs = min(jobs or core_count(), max(1, len(todo)))
    parallel = executor == "ray" or jobs > 1
    echo(f"{len(outcomes)} trials in {out}: {len(todo)} to run"
         + (f" ({sum(o.state == 'resume' for o in todo)} resumed)" if todo else "")
         + (f", {skipped} already done" if skipped else "")
         + (f"; {jobs} at a time ({executor})" if todo else ""))
    if not todo:
        return outcomes
    out.mkdir(parents=True, exist_ok=True)
    payloads = []
    for o in todo:
        config = o.trial.config.replace(out=str(out), name=o.trial.name)
        if parallel:
            config = config.replace(progress=False)  # bars from several processes would garble the terminal
        payloads.append({"config": config.to_dict(), "params": o.trial.params,
                         "resume": str(o.folder) if o.state == "resume" else None,
                         "log": str(out / "logs" / f"{o.trial.name}.log") if parallel else None})
    if executor == "ray":
        results = run_ray(payloads, jobs, address, cpus_per_trial)
    else:
        results = run_local(payloads, jobs)
    finished = 0
    for index, result in results:
        o = todo[index]
        o.status, o.error, o.seconds = result["status"], result.get("error", ""), result.get("seconds", 0.0)
        finished += 1
        note = f": {o.error}" if o.error else ""
        echo(f"[{finished}/{len(todo)}] {o.trial.name}: {o.status} in {o.seconds:.0f} s{note}")
    return outcomes


def run_sweep(grid, out: str | os.PathLike, *, overrides: dict | None = None, jobs: int | None = None,
              executor: str = "local", address: str | None = None, cpus_per_trial: int | None = None,
              echo=print):
    """Run a :class:`~cnnlab.studies.grid.Grid` into ``out`` and write its report there.

    ``out`` receives one run folder per trial, ``sweep.json`` (the grid and its trials),
    ``results.md`` / ``results.csv`` and ``curves.png`` (every validation-accuracy curve). Returns
    ``(outcomes, results)``: what happened now, and what the run folders hold (a list of
    :class:`~cnnlab.studies.report.TrialResult`). After Ctrl-C the report of the trials done so far
    is still written.
    """
    trials = grid.trials(**(overrides or {}))
    out = Path(out)
    # Every check first: bad options, or run folders trained with other options, must leave ``out`` as it was.
    check_executor_options(executor, jobs, address, cpus_per_trial)
    plan(trials, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "sweep.json", json.dumps({
        "grid": grid.source, "description": grid.description, "base": grid.base, "axes": grid.axes,
        "variants": grid.variants, "overrides": overrides or {},
        "trials": [{"name": t.name, "params": t.params} for t in trials]}, indent=2, default=str) + "\n")
    try:
        outcomes = run_trials(trials, out, jobs=jobs, executor=executor, address=address,
                              cpus_per_trial=cpus_per_trial, echo=echo)
    finally:
        results = write_sweep_report(grid, trials, out)
    echo(f"results: {out / 'results.md'}, {out / 'results.csv'}, {out / 'curves.png'}")
    return outcomes, results


def write_sweep_report(grid, trials: list[Trial], out: Path):
    """``results.md``, ``results.csv`` and ``curves.png`` from the run folders in ``out``."""
    from ..plots import save_figure
    from .report import accuracy_curves_figure, collect, sweep_table, write_table

    results = collect(trials, out)
    columns, rows = sweep_table(results)
    notes = ("Accuracies in %. *final*: validation accuracy after the last epoch; *best*: the highest over the "
             "epochs (at *best epoch*); *test*: the final model on the test set; *epoch time*: mean seconds "
             "per epoch (training + validation), on the machine that ran the sweep. One run folder per trial, next "
             "to this file.")
    title = f"Sweep {Path(grid.source).stem}" + (f": {grid.description}" if grid.description else "")
    write_table(out / "results", columns, rows, title, notes)
    save_figure(accuracy_curves_figure(results, title=f"validation accuracy — {Path(grid.source).stem}"),
                out / "curves.png")
    return results


def run_study(trials: list[Trial], out: str | os.PathLike, write_report, *, echo=print, **executor_options):
    """Run a study's trials into ``out`` (like a sweep: parallel, resumable), then ``write_report(trials, out)``.

    Returns ``(outcomes, results)``; after Ctrl-C the report of what is done is still written.
    """
    out, results = Path(out), None
    check_executor_options(executor_options.get("executor", "local"), executor_options.get("jobs"),
                           executor_options.get("address"), executor_options.get("cpus_per_trial"))
    plan(trials, out)  # raises before the report is rewritten when a run folder holds other options
    try:
        outcomes = run_trials(trials, out, echo=echo, **executor_options)
    finally:
        if out.is_dir():
            results = write_report(trials, out)
    return outcomes, results
