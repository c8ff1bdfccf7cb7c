"""Research workflows: hyperparameter sweeps and the classic studies, each one command -> a table and a figure.

* :mod:`~cnnlab.studies.grid` — grid files (base config + axes + variants) -> :class:`Trial` list;
* :mod:`~cnnlab.studies.sweep` — run trials in parallel processes or on Ray, resume, skip finished ones;
* :mod:`~cnnlab.studies.report` — read results back from the run folders, Markdown/CSV tables, figures;
* :mod:`~cnnlab.studies.datasize`, :mod:`~cnnlab.studies.initialization`,
  :mod:`~cnnlab.studies.overfitting` — the studies, built on the same trials and run folders.

Every trial is an ordinary training run (:func:`cnnlab.training.runs.train_run`), so each one can be inspected,
evaluated or resumed with the usual commands.
"""

from .grid import Grid, Trial, load_grid
from .sweep import run_sweep, run_trials

__all__ = ["Grid", "Trial", "load_grid", "run_sweep", "run_trials"]
