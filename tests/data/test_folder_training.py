"""Image folders in training (issue 12, item 7): the majority decides gray or colour (and says so), a missing
test split is refused before training, and ``cnnlab predict`` answers with the folder's class names."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.folder import load_image_folder


def stroke(kind: str, shift: int) -> np.ndarray:
    """A white stroke on black, 40x40: a vertical 'bar' or a horizontal 'dash', moved by ``shift``."""
    image = np.zeros((40, 40), np.uint8)
    if kind == "bar":
        image[8:32, 17 + shift:23 + shift] = 255
    else:
        image[17 + shift:23 + shift, 8:32] = 255
    return image


def make_folder(root, colour=(), n=6, splits=("",)):
    """``n`` grayscale strokes per class ('bar', 'dash') in each split; the names in ``colour`` saved as RGB."""
    for split in splits:
        for kind in ("bar", "dash"):
            folder = root / split / kind
            folder.mkdir(parents=True)
            for i in range(n):
                name = f"{kind}{i}.png"
                image = Image.fromarray(stroke(kind, i - n // 2), "L")
                (image.convert("RGB") if name in colour else image).save(folder / name)
    return root


def test_one_colour_picture_among_gray_ones_keeps_the_digit_mode_and_says_so(tmp_path):
    ds = load_image_folder(make_folder(tmp_path / "f", colour={"bar0.png"}))
    assert ds.mode == "digit" and ds.images.shape == (12, 1, 28, 28)
    assert len(ds.notes) == 1 and "11 of 12 pictures are grayscale: digit mode" in ds.notes[0]
    assert "1 colour picture converted to gray (bar0.png)" in ds.notes[0] and "--folder-mode" in ds.notes[0]


def test_a_colour_majority_gives_rgb_and_an_explicit_mode_wins(tmp_path):
    colour = {f"{k}{i}.png" for k in ("bar", "dash") for i in range(5)}
    ds = load_image_folder(make_folder(tmp_path / "f", colour=colour))
    assert ds.mode == "rgb" and ds.images.shape == (12, 3, 32, 32)
    assert "10 of 12 pictures are in colour: rgb mode" in ds.notes[0] and "2 grayscale pictures" in ds.notes[0]
    forced = load_image_folder(tmp_path / "f", mode="gray", size=20)
    assert forced.mode == "gray" and forced.images.shape == (12, 1, 20, 20) and forced.notes == ()


TRAIN = ["--arch", "mlp:784-16-2", "--epochs", "2", "--batch-size", "4", "--val-split", "4", "--no-progress",
         "--optimizer", "adam", "--lr", "0.01"]


def test_a_folder_without_a_test_split_is_refused_before_training(tmp_path, capsys):
    folder = make_folder(tmp_path / "f")
    code = main(["train", *TRAIN, "--dataset", f"folder:{folder}", "--out", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 2 and "has no train/ and test/ sub-folders" in err and "--no-test" in err
    assert "epoch" not in out and not (tmp_path / "runs").exists()  # nothing trained, no run folder


def test_mismatched_class_folders_are_refused_before_training(tmp_path, capsys):
    folder = make_folder(tmp_path / "f", splits=("train", "test"))
    (folder / "test" / "dash").rename(folder / "test" / "dot")
    assert main(["train", *TRAIN, "--dataset", f"folder:{folder}", "--out", str(tmp_path / "runs")]) == 2
    assert "test/ must have the same class sub-folders as train/" in capsys.readouterr()[1]


def test_train_says_the_mode_records_it_and_predict_answers_with_class_names(tmp_path, capsys):
    folder = make_folder(tmp_path / "f", colour={"dash1.png"}, splits=("train", "test"))
    code = main(["train", *TRAIN, "--dataset", f"folder:{folder}", "--out", str(tmp_path), "--name", "r"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "data: 11 of 12 pictures are grayscale: digit mode" in out and "test accuracy:" in out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["folder_mode"] == "digit"

    picture = tmp_path / "new.png"
    Image.fromarray(stroke("bar", 0), "L").save(picture)
    assert main(["predict", str(picture), "--model", str(tmp_path / "r" / "model.safetensors")]) == 0
    out, _ = capsys.readouterr()
    answer = [line for line in out.splitlines() if "answer:" in line][0].split("answer:")[1].strip()
    assert answer in ("bar", "dash")
    listed = [line.split()[0] for line in out.splitlines()[1:] if "%" in line]
    assert sorted(listed) == ["bar", "dash"]  # the two classes by name, not 0 and 1

    # evaluate reads the folder in the recorded mode
    assert main(["evaluate", str(tmp_path / "r"), "--split", "test", "--no-plots"]) == 0
    assert "12 images" in capsys.readouterr()[0]
