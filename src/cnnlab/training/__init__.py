"""cnnlab.training."""
