"""The engine: a CNN written from scratch in NumPy, readable on its own.

It imports NumPy and itself only (import-linter checks this in CI). Read it in this order:
``layers/base.py`` (the contract), ``layers/conv.py`` with ``ops/reference.py`` (the textbook convolution),
``losses.py``, ``model.py`` (forward, loss, backward, update), ``optim.py``; ``gradcheck.py`` proves the
gradients. Everything else in cnnlab (data, training loops, files, the page) is built on top of it.
"""
