"""cnnlab.bench."""
