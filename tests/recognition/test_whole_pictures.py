"""Any model on any picture: whole-picture models (Fashion-MNIST, CIFAR-10) skip the digit pipeline, use the
preprocessing stored with them and answer with their class names."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnlab.engine.errors import CnnlabError
from cnnlab.io import save_model
from cnnlab.recognition.picture import prepare_resized, uses_resize
from cnnlab.recognition.serve.recognize import Recognizer
from cnnlab.training.presets import build
from cnnlab.training.recipes import preprocessing_for

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def dark_shirt_on_white(size=(120, 90)) -> Image.Image:
    picture = Image.new("L", size, 255)
    ImageDraw.Draw(picture).rectangle([30, 20, 90, 70], fill=40)
    return picture


def test_each_dataset_stores_how_its_pictures_are_read():
    assert preprocessing_for("mnist", (1, 28, 28))["pipeline"] == "digit"
    fashion = preprocessing_for("fashion-mnist", (1, 28, 28))
    assert fashion["pipeline"] == "resize" and fashion["polarity"] == "light-on-dark"
    cifar = preprocessing_for("cifar10", (3, 32, 32))
    assert cifar["pipeline"] == "resize" and cifar["polarity"] == "as-is" and cifar["channels"] == 3
    assert not uses_resize({}) and not uses_resize(None)  # models stored before: the digit pipeline


def test_light_on_dark_pictures_are_inverted_padded_and_resized():
    x = prepare_resized(png_bytes(dark_shirt_on_white()), preprocessing_for("fashion-mnist", (1, 28, 28)), (1, 28, 28))
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert x[0, 0].max() < 0.05 and x[0, 14, 14] > 0.7  # black background, the shirt light, as in the dataset
    # the 120x90 picture was padded to a square first: its shape is kept (wider than tall)
    rows, cols = np.nonzero(x[0] > 0.5)
    assert np.ptp(cols) > np.ptp(rows)


def test_colour_pictures_keep_their_colours_for_an_rgb_model():
    picture = Image.new("RGB", (64, 48), (200, 30, 30))
    x = prepare_resized(png_bytes(picture), preprocessing_for("cifar10", (3, 32, 32)), (3, 32, 32))
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x[:, 16, 16], [200 / 255, 30 / 255, 30 / 255], atol=0.02)


def cifar_model():
    model = build("vgg-mini", (3, 32, 32), 10, seed=0)
    model.info = {"preprocessing": preprocessing_for("cifar10", (3, 32, 32)), "class_names": CIFAR_NAMES}
    return model


def test_a_cifar_shaped_model_predicts_a_colour_picture_with_its_class_names():
    recognizer = Recognizer(cifar_model(), top_k=3)
    answer = recognizer.recognize(png_bytes(Image.new("RGB", (50, 40), (20, 120, 220))), features=True, explain=True)
    assert answer["class_name"] == CIFAR_NAMES[answer["prediction"]]
    assert [e["name"] for e in answer["top_k"]] == [CIFAR_NAMES[e["label"]] for e in answer["top_k"]]
    assert abs(sum(answer["probabilities"]) - 1) < 1e-5
    shown = Image.open(io.BytesIO(__import__("base64").b64decode(answer["processed"].split(",", 1)[1])))
    assert shown.mode == "RGB" and shown.size == (32, 32)
    assert answer["feature_maps"] and answer["explanation"]["method"] == "grad-cam"
    with pytest.raises(CnnlabError, match="reads whole pictures"):
        recognizer.recognize(png_bytes(Image.new("RGB", (50, 40))), number=True)


def test_predict_prints_the_stored_class_name(tmp_path, capsys):
    from cnnlab.cli import main

    model = cifar_model()
    path = save_model(model, tmp_path / "cifar.safetensors", class_names=CIFAR_NAMES,
                      preprocessing=model.info["preprocessing"])
    photo = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), (20, 120, 220)).save(photo)
    assert main(["predict", str(photo), "--model", str(path)]) == 0
    out = capsys.readouterr().out
    answer = out.strip().splitlines()[-1]
    assert answer.startswith("  answer: ") and answer.split("answer: ")[1] in CIFAR_NAMES


def test_an_unknown_bundled_name_is_a_one_line_error(capsys):
    from cnnlab.cli import main

    code = main(["predict", "--example", "--model", "fahsion"])
    err = capsys.readouterr().err
    assert code == 2 and "no model file or bundled model called 'fahsion'; bundled: digits, lenet5, fashion" in err
    assert "Traceback" not in err


@pytest.mark.data
def test_the_bundled_fashion_model_reads_clothes_photographed_on_white(real_data, tmp_path, capsys):
    """``--model fashion``: >= 92% on the Fashion-MNIST test set, and the same pictures shown the way a
    product photo is (dark on white, larger) are read by the whole-picture path with their names."""
    from cnnlab.cli import main
    from cnnlab.data import load_dataset
    from cnnlab.data.normalize import normalize
    from cnnlab.io import load_bundled_model

    model = load_bundled_model("fashion")
    test = load_dataset("fashion-mnist", "test", real_data("fashion-mnist"), download=False, progress=False)
    accuracy = float((model.predict(normalize(test.images, model.info["preprocessing"])) == test.labels).mean())
    assert accuracy >= 0.92
    recognizer = Recognizer(model)
    right = 0
    for i in range(40):
        photo = Image.fromarray(255 - test.images[i, 0]).resize((112, 112), Image.Resampling.BICUBIC)
        answer = recognizer.recognize(png_bytes(photo))
        right += answer["prediction"] == test.labels[i]
        assert answer["class_name"] == test.class_names[answer["prediction"]]
    assert right >= 32  # 80%: the photos lose a little to the double resampling, not the inversion
    shirt = tmp_path / "shirt.png"
    Image.fromarray(255 - test.images[0, 0]).resize((112, 112)).save(shirt)
    assert main(["predict", str(shirt), "--model", "fashion"]) == 0
    assert f"answer: {test.class_names[test.labels[0]]}" in capsys.readouterr().out
