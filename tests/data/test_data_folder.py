"""A user's own image folders (one sub-folder per class), in digit, gray and RGB modes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.folder import load_image_folder
from cnnlab.engine.errors import DataError


def save(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def colour_folder(root):
    """Classes 'blue' and 'red', pictures of different sizes filled with their colour."""
    save(root / "red" / "a.png", np.full((40, 50, 3), (255, 0, 0), np.uint8), "RGB")
    save(root / "red" / "b.jpg", np.full((20, 20, 3), (250, 0, 0), np.uint8), "RGB")
    save(root / "blue" / "c.png", np.full((64, 16, 3), (0, 0, 255), np.uint8), "RGB")
    (root / "blue" / "notes.txt").write_text("not an image: ignored")
    (root / ".hidden").mkdir()


def test_rgb_folder_resized_channel_first(tmp_path):
    colour_folder(tmp_path / "pics")
    ds = load_dataset(f"folder:{tmp_path / 'pics'}", image_size=(16, 24))
    assert ds.class_names == ("blue", "red")  # sorted sub-folder names; hidden ones skipped
    assert ds.images.shape == (3, 3, 16, 24) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, [0, 1, 1])
    assert ds.images[0, 2].min() == 255 and ds.images[0, 0].max() == 0  # blue in channel 2
    assert ds.images[1, 0].min() == 255 and ds.images[2, 0].min() > 240  # red in channel 0
    assert not ds.verified and ds.name == f"folder:{tmp_path / 'pics'}"


def test_auto_mode_picks_rgb_for_colour_and_default_size_is_cifar(tmp_path):
    colour_folder(tmp_path / "pics")
    assert load_image_folder(tmp_path / "pics").images.shape == (3, 3, 32, 32)


def test_gray_mode(tmp_path):
    save(tmp_path / "f" / "x" / "1.png", np.full((10, 30), 200, np.uint8), "L")
    save(tmp_path / "f" / "y" / "2.png", np.full((50, 50, 3), 100, np.uint8), "RGB")
    ds = load_image_folder(tmp_path / "f", mode="gray", size=14)
    assert ds.images.shape == (2, 1, 14, 14)
    np.testing.assert_array_equal(ds.images[:, 0, 7, 7], [200, 100])


def test_train_test_subfolders(tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        for k in range(n):
            save(tmp_path / "d" / split / "cat" / f"{k}.png", np.zeros((8, 8), np.uint8), "L")
            save(tmp_path / "d" / split / "dog" / f"{k}.png", np.zeros((8, 8), np.uint8), "L")
    assert len(load_image_folder(tmp_path / "d", "train", mode="gray")) == 6
    assert len(load_image_folder(tmp_path / "d", "test", mode="gray")) == 2


def test_flat_folder_has_no_test_split(tmp_path):
    save(tmp_path / "d" / "a" / "0.png", np.zeros((8, 8), np.uint8), "L")
    with pytest.raises(DataError, match="only split 'train'.*got 'test'"):
        load_image_folder(tmp_path / "d", "test", mode="gray")


@pytest.mark.parametrize(
    "setup, problem",
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no class sub-folders"),
        (lambda root: (root / "empty").mkdir(parents=True), "class 'empty' has no images"),
        (lambda root: (root / "a").mkdir(parents=True) or (root / "a" / "x.png").write_bytes(b"junk"),
         "x.png: not a readable image"),
    ],
)
def test_folder_problems_are_data_errors(tmp_path, setup, problem):
    root = tmp_path / "imgs"
    setup(root)
    with pytest.raises(DataError, match=problem):
        load_image_folder(root, mode="gray")


def test_unknown_mode(tmp_path):
    with pytest.raises(DataError, match="unknown folder mode 'cmyk'"):
        load_image_folder(tmp_path, mode="cmyk")


def test_digit_mode_uses_the_digit_preprocessing(tmp_path):
    page = np.full((60, 40), 255, np.uint8)  # a dark "1" on white paper, off-centre
    page[10:50, 5:11] = 0
    save(tmp_path / "digits" / "1" / "one.png", page, "L")
    ds = load_dataset(f"folder:{tmp_path / 'digits'}")  # auto: gray pictures -> digit mode
    assert ds.images.shape == (1, 1, 28, 28) and ds.images.dtype == np.uint8
    img = ds.images[0, 0].astype(float)
    assert img.max() > 200 and img[:, :3].max() == 0 and img[:3].max() == 0  # light ink, dark border
    cols = np.arange(28)
    centre = (img.sum(axis=0) * cols).sum() / img.sum()
    assert abs(centre - 13.5) < 2  # re-centred like MNIST


def test_digit_mode_blank_page_names_the_file(tmp_path):
    save(tmp_path / "digits" / "0" / "blank.png", np.full((30, 30), 255, np.uint8), "L")
    with pytest.raises(DataError, match="blank.png"):
        load_image_folder(tmp_path / "digits", mode="digit")


def test_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    """The header's size is checked as cnnlab.recognition.preprocess.load_image checks it (decompression bombs)."""
    from cnnlab.recognition import preprocess

    save(tmp_path / "f" / "a" / "small.png", np.zeros((10, 10), np.uint8), "L")
    save(tmp_path / "f" / "b" / "large.png", np.zeros((12, 12), np.uint8), "L")
    monkeypatch.setattr(preprocess, "MAX_IMAGE_PIXELS", 120)  # 10 x 10 passes, 12 x 12 does not
    decoded = []
    original_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or original_load(self))
    for mode in ("gray", "auto"):
        with pytest.raises(DataError, match=r"large\.png: image of 12x12 pixels refused"):
            load_image_folder(tmp_path / "f", mode=mode)
    assert (12, 12) not in decoded


def test_every_opened_image_is_closed(tmp_path):
    """Animated GIFs keep their file open after decoding until closed: a big folder would run out of handles
    (an open file that is garbage-collected raises a ResourceWarning)."""
    import gc
    import warnings

    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
    for name in ("0", "1"):
        (tmp_path / "f" / name).mkdir(parents=True)
        frames[0].save(tmp_path / "f" / name / "anim.gif", save_all=True, append_images=frames[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for mode in ("gray", "auto"):
            assert load_image_folder(tmp_path / "f", mode=mode).images.shape[0] == 2
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
