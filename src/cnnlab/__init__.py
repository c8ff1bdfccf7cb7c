"""cnnlab: understand, train, study and use convolutional neural networks.

The engine is written from scratch in NumPy: every layer computes its forward pass and its own gradients.
"""

__version__ = "0.1.0"
