"""cnnlab.engine."""
