"""The connected pieces of an ink mask, labelled once and measured once.

Choosing the written mark, judging whether the frame is full of grid or shading, and checking that the mark
is one digit all ask the same questions of the same pieces: where is each one (its bounding box), how many
pixels has it, does it touch the frame. Each question asked of a labelled picture costs a pass over all of
its pixels (``ndimage.find_objects``, ``np.bincount``: 0.2-0.3 ms each on a 500x375 photo), and a picture of
noise or a grid has thousands of pieces (3,222 on the noise test picture), so the answers are computed here once,
as arrays with one row per piece, and the questions become array comparisons instead of Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: 8-connectivity: pixels touching by a corner belong to the same piece (a thin diagonal stroke stays whole).
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Components:
    """``labels`` ``(h, w)`` (0 = no ink, ``k`` = piece ``k``), ``count`` pieces, and per piece (row ``k - 1``
    for label ``k``) its bounding box ``boxes`` ``(count, 4)`` as (top, left, bottom, right), bottom and right
    exclusive, and its pixel count ``sizes`` ``(count,)``. ``inked`` holds the flat indices of the labelled
    pixels and ``inked_labels`` their labels: ink is a few percent of a photo, so the sums and masks of pieces
    read only those."""

    labels: np.ndarray
    count: int
    boxes: np.ndarray
    sizes: np.ndarray
    inked: np.ndarray
    inked_labels: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray) -> "Components":
        """Label the 8-connected pieces of a boolean ``(h, w)`` mask and measure them."""
        labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        slices = ndimage.find_objects(labels, max_label=count)
        boxes = np.array([(r.start, c.start, r.stop, c.stop) for r, c in slices], dtype=np.intp).reshape(count, 4)
        inked = np.flatnonzero(labels)
        inked_labels = labels.ravel()[inked]
        sizes = np.bincount(inked_labels, minlength=count + 1)[1:]
        return cls(labels, count, boxes, sizes, inked, inked_labels)

    def touching_frame(self) -> np.ndarray:
        """Boolean ``(count,)``: which pieces reach the picture's edge (the sheet's edge, the desk, a grid)."""
        height, width = self.labels.shape
        top, left, bottom, right = self.boxes.T
        return (top == 0) | (left == 0) | (bottom == height) | (right == width)

    def heights(self) -> np.ndarray:
        """``(count,)``: each piece's height in rows."""
        return self.boxes[:, 2] - self.boxes[:, 0]

    def ink_of(self, ink: np.ndarray) -> np.ndarray:
        """``(count,)``: the summed ``ink`` ``(h, w)`` of each piece (a dark stroke outweighs a pale shadow)."""
        weights = ink.ravel()[self.inked].astype(np.float64)
        return np.bincount(self.inked_labels, weights=weights, minlength=self.count + 1)[1:]

    def mask_of(self, chosen) -> np.ndarray:
        """Boolean ``(h, w)``: the pixels of the pieces labelled ``chosen`` (a list or array of labels)."""
        keep = np.zeros(self.count + 1, dtype=bool)
        keep[chosen] = True
        mask = np.zeros(self.labels.shape, dtype=bool)
        mask.ravel()[self.inked[keep[self.inked_labels]]] = True
        return mask
