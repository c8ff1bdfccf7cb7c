"""What Jupyter shows: ``_repr_html_`` of a model summary and of an evaluation (well-formed, escaped, right)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from cnnlab.evaluation import evaluate_predictions
from cnnlab.training.presets import build


def cells(element, tag="td") -> list[str]:
    return ["".join(c.itertext()).strip() for c in element.iter(tag)]


def test_model_summary_html_lists_every_layer_and_the_totals():
    model = build("lenet5")
    html = model._repr_html_()
    table = ET.fromstring(html)  # well-formed markup: every tag closed
    body_rows = table.find("tbody").findall("tr")
    assert len(body_rows) == len(model.layers)
    for row, layer in zip(body_rows, model.layers):
        name, kind, shape, params = cells(row)
        assert (name, kind, params) == (layer.name, layer.kind, f"{layer.n_params:,}")
        assert shape == str((None, *layer.output_shape))
    assert "61,706" in cells(table.find("tfoot"))
    assert "(None, 1, 28, 28)" in "".join(table.find("caption").itertext())


def test_model_summary_html_escapes_names():
    model = build("mlp:784-30-10")
    model.name = '<script>alert("x")</script>'
    html = model._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    ET.fromstring(html)


def test_evaluation_html_shows_accuracy_per_class_and_the_confusion_matrix():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    preds = np.array([0, 0, 1, 1, 1, 2, 2, 2, 0, 2])
    result = evaluate_predictions(labels, preds, 3, class_names=("cat", "dog", "<b>x</b>"), loss=0.25)
    html = result._repr_html_()
    div = ET.fromstring(html)
    assert "accuracy 80.00% (8 of 10 correct, 2 wrong), loss 0.2500" in "".join(div.find("p").itertext())
    rows = div.find("table").find("tbody").findall("tr")
    assert [cells(r, "th")[0] for r in rows] == ["cat", "dog", "<b>x</b>"]  # escaped: shown as text
    grid = [cells(r)[2:] for r in rows]  # after the accuracy and sample-count cells
    assert grid == [[str(v) for v in row] for row in result.confusion.tolist()]
    assert cells(rows[0])[:2] == ["66.67%", "3"]
    # the diagonal is shaded green, a confusion red, an empty cell not at all
    row0 = rows[0].findall("td")
    assert "rgba(40,160,60,0.400)" in row0[2].get("style")    # 2 of 3 cats right
    assert "rgba(220,50,40,0.200)" in row0[3].get("style")    # 1 of 3 cats called dog
    assert "rgba(220,50,40,0.000)" in row0[4].get("style")
