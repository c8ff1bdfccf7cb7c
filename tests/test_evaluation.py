"""Evaluation metrics (confusion, per-class, mistakes) and the figures built from them."""

import json

import numpy as np
import pytest

from cnnlab.engine.errors import ShapeError
from cnnlab.evaluation import (confusion_matrix, evaluate_model, evaluate_predictions, format_confusion,
                             predicted_classes)


def test_confusion_matrix_matches_a_counting_loop():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.7, true, rng.integers(0, 5, 300))
    expected = np.zeros((5, 5), np.int64)
    for t, p in zip(true, pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(true, pred, 5), expected)


def test_evaluation_fields_and_json():
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    result = evaluate_predictions(labels, preds, 4, class_names="abcd")
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.n == 6
    assert result.per_class == [0.5, pytest.approx(2 / 3), 1.0, None]  # class 'd' has no sample
    np.testing.assert_array_equal(result.misclassified, [1, 4])
    payload = json.loads(json.dumps(result.to_json()))
    assert set(payload) == {"accuracy", "n", "per_class", "confusion"}
    assert payload["confusion"][1] == [1, 2, 0, 0]
    text = result.report()
    assert "66.67%" in text and "n/a" in text and "rows: true class" in text


def test_format_confusion_aligns_names():
    text = format_confusion(np.array([[12, 0], [3, 150]]), ["cat", "dog"])
    lines = text.splitlines()
    assert lines[0].split() == ["cat", "dog"]
    assert lines[2].split() == ["dog", "3", "150"]
    assert len({len(line) for line in lines}) == 1


def test_bad_labels_are_refused():
    with pytest.raises(ShapeError, match=r"labels must be in \[0, 2\]"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ShapeError, match="same shape"):
        confusion_matrix([0, 1], [0], 3)


def test_predicted_classes_for_one_sigmoid_unit_and_logits():
    out = np.array([[0.2], [0.7]])
    np.testing.assert_array_equal(predicted_classes(out), [0, 1])
    np.testing.assert_array_equal(predicted_classes(np.array([[-0.1], [0.3]]), from_logits=True), [0, 1])
    np.testing.assert_array_equal(predicted_classes(np.array([[0.1, 0.9], [3.0, -1.0]])), [1, 0])


def test_evaluate_model_agrees_with_predict_and_loss():
    from cnnlab.training.presets import build
    from cnnlab.engine.losses import get_loss

    model = build("mlp:784-16-10", seed=1, output="softmax")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (250, 1, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 250)
    x = images.astype(np.float32) / 255
    loss = get_loss("crossentropy")
    # Uneven batches (100, 100, 50) and a per-batch transform from uint8 must give the same answer.
    result = evaluate_model(model, images, labels, batch_size=100, loss=loss,
                            transform=lambda b: b.astype(np.float32) / 255)
    np.testing.assert_array_equal(result.predictions, model.predict(x))
    assert result.accuracy == pytest.approx(np.mean(model.predict(x) == labels))
    assert result.loss == pytest.approx(model.loss_and_output(x, labels, loss)[0], rel=1e-5)


# -- figures -----------------------------------------------------------------------------------------------
def _texts(fig):
    suptitle = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    return [t.get_text() for ax in fig.axes for t in (ax.title, *ax.texts)] + suptitle


def test_misclassified_gallery_labels_each_image():
    from cnnlab.plots import misclassified_figure

    images = np.zeros((6, 1, 28, 28), np.uint8)
    labels = np.array([5, 1, 2, 3, 4, 5])
    preds = np.array([3, 1, 2, 3, 9, 5])
    fig = misclassified_figure(images, labels, preds, class_names=[str(d) for d in range(10)])
    texts = _texts(fig)
    assert "pred 3 / true 5" in texts and "pred 9 / true 4" in texts
    assert sum(t.startswith("pred") for t in texts) == 2


def test_confusion_figure_writes_counts_and_save_is_atomic(tmp_path):
    from cnnlab.plots import confusion_figure, save_figure

    fig = confusion_figure(np.array([[7, 1], [0, 4]]), ["a", "b"])
    assert {"7", "1", "4"} <= set(_texts(fig))
    path = tmp_path / "confusion.png"
    save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]  # no temporary file left


def test_curves_figure_has_the_three_panels_and_skips_switched_off_monitors():
    from cnnlab.plots import curves_figure

    rows = [{"epoch": e, "train_cost": 1 / e, "train_accuracy": None, "val_cost": 1.2 / e,
             "val_accuracy": 0.8 + e / 100} for e in (1, 2, 3)]
    fig = curves_figure(rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["cost", "accuracy", "overlay"]
    cost, acc = fig.axes[0], fig.axes[1]
    assert [line.get_label() for line in cost.lines] == ["training", "validation"]
    assert [line.get_label() for line in acc.lines] == ["validation"]  # training accuracy was off
    np.testing.assert_allclose(acc.lines[0].get_ydata(), [81, 82, 83])
