"""Test pictures cnnlab makes itself: synthetic phone photos of handwritten digits and of things that are
not digits (:mod:`cnnlab.synthetic.photos`). Deterministic by seed, so a measured accuracy can be repeated."""
