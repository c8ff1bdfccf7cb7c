"""Measuring the engine: per-layer profiles and epoch speed per device (``cnnlab bench``)."""
