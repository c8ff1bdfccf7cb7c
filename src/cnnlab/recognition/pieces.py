"""Pieces of ink, grouped into digits: components that share their columns are one digit, and a short
loose stroke belongs to its nearest neighbour.

Used to cut a number into digits (:mod:`cnnlab.recognition.segment`) and to tell one digit from several in
single-digit mode (:mod:`cnnlab.recognition.reject`). A :class:`Piece` holds component labels and a bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

MERGE_OVERLAP = 0.5  # x-overlap (fraction of the narrower piece) above which two components are one digit
FRAGMENT_HEIGHT = 0.5  # a piece shorter than half the typical digit height is part of a neighbour


@dataclass
class Piece:
    """Part of the picture taken for one digit: some components, within columns ``x0 <= x < x1``."""

    labels: list[int]
    x0: int
    x1: int
    y0: int = 0
    y1: int = 0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def merge_broken_strokes(pieces: list[Piece], overlap: float = MERGE_OVERLAP) -> list[Piece]:
    """Merge pieces whose column ranges overlap by more than ``overlap`` of the narrower one.

    Digits of a number sit side by side, so two components sharing most of their columns are strokes
    of the same digit (the bar of a "5", the halves of a "4" written in two strokes, a broken "0").
    """
    merged: list[Piece] = []
    for piece in sorted(pieces, key=lambda p: p.x0):
        if merged:
            last = merged[-1]
            shared = min(last.x1, piece.x1) - max(last.x0, piece.x0)
            if shared > overlap * min(last.width, piece.width):
                merged[-1] = _join(last, piece)
                continue
        merged.append(piece)
    return merged


def _join(a: Piece, b: Piece) -> Piece:
    return Piece(a.labels + b.labels, min(a.x0, b.x0), max(a.x1, b.x1), min(a.y0, b.y0), max(a.y1, b.y1))


def attach_fragments(pieces: list[Piece], fraction: float = FRAGMENT_HEIGHT) -> list[Piece]:
    """Join every piece shorter than ``fraction`` of the tallest one to its nearest neighbour along x.

    Digits of one number have about the same height; a short piece is a stroke that came loose (the
    bar of a "5" often does not touch the body) rather than a digit of its own.
    """
    pieces = sorted(pieces, key=lambda p: p.x0)
    while len(pieces) > 1:
        tallest = max(p.height for p in pieces)
        short = [i for i, p in enumerate(pieces) if p.height < fraction * tallest]
        if not short:
            break
        i = short[0]
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(pieces)]

        def gap(j: int) -> int:  # columns between the two pieces (negative when they overlap)
            return max(pieces[i].x0, pieces[j].x0) - min(pieces[i].x1, pieces[j].x1)

        j = min(neighbours, key=gap)
        joined = _join(pieces[i], pieces[j])
        pieces = [p for k, p in enumerate(pieces) if k not in (i, j)] + [joined]
        pieces.sort(key=lambda p: p.x0)
    return pieces
