"""Training on top of the engine: the loop (``fit``), callbacks and history, configs, presets
(named architectures), recipes (config -> objects), run folders and checkpoints, the ``train`` CLI."""
