"""The "not a digit" class: the drawn marks (cnnlab.synthetic.non_digits) and `--non-digits` in training."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError
from cnnlab.recognition.reject import count_loops
from cnnlab.synthetic import non_digits
from cnnlab.synthetic.non_digits import NOT_A_DIGIT, TRAIN_LETTERS, non_digit_images
from cnnlab.training.config import TrainConfig
from cnnlab.training.recipes import load_data, with_non_digits


def test_marks_are_mnist_style_pictures_and_follow_the_seed():
    a = non_digit_images(12, seed=4)
    assert a.shape == (12, 28, 28) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, non_digit_images(12, seed=4))
    assert not np.array_equal(a, non_digit_images(12, seed=5))
    # the pipeline's output: ink in the middle 20x20 box, a dark frame, strokes reaching full strength
    assert a[:, :2].max() == 0 and a[:, -2:].max() == 0 and a.reshape(12, -1).max(axis=1).min() > 200


def test_scribbles_enclose_at_least_three_loops():
    marks = non_digit_images(8, seed=0, scribbles=1.0)
    assert min(count_loops(m > 0.3 * 255) for m in marks) >= non_digits.MIN_SCRIBBLE_LOOPS


def test_digit_like_letters_are_left_out():
    # a sloppy 0, 1, 2, 5, 6, 8 or 9 must stay readable as a digit
    assert not set(TRAIN_LETTERS) & set("OoDQIilTJjZzSsGbBgq")
    assert "Aileron" not in " ".join(non_digits.FONT_FILES)  # the test photos' font is not trained on


def test_load_data_adds_the_class_to_training_and_validation(fake_mnist):
    config = TrainConfig(data_dir=str(fake_mnist.data_dir), val_split=10, non_digits=30, progress=False)
    train, val, class_names = load_data(config, echo=lambda _: None)
    assert class_names[-1] == NOT_A_DIGIT and len(class_names) == 11
    assert (len(train), len(val)) == (50 + 27, 10 + 3)
    assert (train.labels == 10).sum() == 27 and (val.labels == 10).sum() == 3
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (1, 28, 28)


def test_non_digits_need_a_digit_dataset_and_a_count():
    with pytest.raises(ConfigError, match="non_digits must be a count"):
        TrainConfig(non_digits=-1)
    config = TrainConfig(dataset="fashion-mnist", non_digits=10)

    class Clothes:  # the split's own contents do not matter: the dataset's name is refused first
        sample_shape = (1, 28, 28)

    with pytest.raises(ConfigError, match="digit dataset"):
        with_non_digits(config, Clothes(), None)
