"""Meeting the ecosystem: ONNX and PyTorch export, PyTorch import, the bridge to torch.nn."""
