"""The package version, in a module of its own (imported by the CLI and run records without loading cnnlab's
lazy public API)."""

__version__ = "0.1.0"
