"""The model summary as an HTML table: what Jupyter shows for a ``Sequential`` at the end of a cell.

``Sequential._repr_html_`` calls :func:`summary_html`; ``Sequential.summary()`` is the same table as
text. Only the standard library (``html.escape``): the engine stays NumPy and itself. Every name is
escaped, so a model file with a layer or model name like ``<script>`` shows as text, never as markup.
"""

from __future__ import annotations

from html import escape

_TABLE_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px"
_CELL = "padding:2px 10px;border-bottom:1px solid #ddd"


def _shape(shape) -> str:
    """``(None, 32, 14, 14)``: the batch axis first, as in the text summary."""
    return escape(str((None, *shape)))


def summary_html(model) -> str:
    """An HTML ``<table>``: one row per layer (name, type, output shape ``(None, C, H, W)``, parameters),
    then the totals. ``model`` is a built :class:`~cnnlab.engine.model.Sequential`."""
    buffers = sum(b.size for layer in model.layers for b in getattr(layer, "buffers", {}).values())
    rows = "".join(
        f'<tr><td style="{_CELL}">{escape(layer.name)}</td><td style="{_CELL}">{escape(layer.kind)}</td>'
        f'<td style="{_CELL}">{_shape(layer.output_shape)}</td>'
        f'<td style="{_CELL};text-align:right">{layer.n_params:,}</td></tr>'
        for layer in model.layers
    )
    head = "".join(f'<th style="{_CELL};text-align:{a}">{h}</th>' for h, a in
                   (("Layer", "left"), ("Type", "left"), ("Output shape", "left"), ("Param #", "right")))
    foot = (f'<tr><td colspan="3" style="{_CELL}"><b>Total params</b> (all trainable)</td>'
            f'<td style="{_CELL};text-align:right"><b>{model.n_params:,}</b></td></tr>'
            f'<tr><td colspan="3" style="{_CELL}">Non-trainable (running statistics)</td>'
            f'<td style="{_CELL};text-align:right">{buffers:,}</td></tr>')
    caption = (f'Model "{escape(model.name)}", input {_shape(model.input_shape)}, '
               f"{len(model.layers)} layers")
    return (f'<table class="cnnlab-summary" style="{_TABLE_STYLE}">'
            f'<caption style="text-align:left;font-weight:bold">{caption}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody><tfoot>{foot}</tfoot></table>")
