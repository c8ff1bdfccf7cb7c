"""Augmentation: exact geometry on known transforms, parity with scipy per image, seeds, noise, the grid PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import map_coordinates

from cnnlab.data.augment import (
    Augmentation,
    affine_source_coords,
    blur_each,
    change_thickness,
    elastic_displacement,
    save_augmentation_grid,
    warp,
)
from cnnlab.engine.errors import ConfigError, ShapeError


def batch(n=6, c=1, h=9, w=9, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def identity(n):
    return np.zeros(n), np.ones(n), np.zeros((n, 2))


def test_identity_transform_returns_the_input():
    x = batch()
    rows, cols = affine_source_coords(*identity(6), 9, 9)
    np.testing.assert_allclose(warp(x, rows, cols), x, atol=1e-6)


def test_quarter_turn_is_rot90():
    x = batch(n=2, c=3, h=7, w=7)
    rows, cols = affine_source_coords(np.full(2, np.pi / 2), np.ones(2), np.zeros((2, 2)), 7, 7)
    np.testing.assert_allclose(warp(x, rows, cols), np.rot90(x, k=1, axes=(2, 3)), atol=1e-5)


def test_integer_shift_moves_pixels_and_fills_with_zero():
    x = batch(n=1, h=6, w=8)
    rows, cols = affine_source_coords(np.zeros(1), np.ones(1), np.array([[2.0, -1.0]]), 6, 8)
    out = warp(x, rows, cols)
    np.testing.assert_allclose(out[0, 0, 2:, :-1], x[0, 0, :-2, 1:], atol=1e-6)  # down 2, left 1
    np.testing.assert_array_equal(out[0, 0, :2], 0)
    np.testing.assert_array_equal(out[0, 0, :, -1], 0)


def test_zoom_keeps_the_centre_pixel():
    x = batch(n=3, h=9, w=9)
    rows, cols = affine_source_coords(np.zeros(3), np.array([0.8, 1.0, 1.25]), np.zeros((3, 2)), 9, 9)
    np.testing.assert_allclose(warp(x, rows, cols)[:, 0, 4, 4], x[:, 0, 4, 4], atol=1e-6)


@pytest.mark.parametrize(
    "fill, scipy_mode", [("constant", "grid-constant"), ("nearest", "nearest"), ("reflect", "reflect")]
)
def test_batched_warp_equals_scipy_image_by_image(fill, scipy_mode):
    rng = np.random.default_rng(1)
    x = batch(n=4, c=3, h=10, w=12)
    rows = rng.uniform(-3, 13, (4, 10, 12)).astype(np.float32)
    cols = rng.uniform(-3, 15, (4, 10, 12)).astype(np.float32)
    out = warp(x, rows, cols, fill)
    for i in range(4):
        for c in range(3):
            ref = map_coordinates(x[i, c], [rows[i], cols[i]], order=1, mode=scipy_mode, cval=0.0)
            np.testing.assert_allclose(out[i, c], ref, atol=1e-5)


@pytest.mark.parametrize("threads", [2, 3])
def test_warp_in_threads_equals_one_call(threads, monkeypatch):
    """Blocks of the stack resampled by several threads give exactly the single-call result."""
    from cnnlab import threads as parallel

    calls = []
    original = parallel.map_in_threads
    monkeypatch.setattr(parallel, "map_in_threads", lambda fn, items, n: calls.append(len(items)) or original(fn, items, n))
    rng = np.random.default_rng(2)
    x = batch(n=70, c=1, h=28, w=28)
    rows = rng.uniform(-3, 30, (70, 28, 28)).astype(np.float32)
    cols = rng.uniform(-3, 30, (70, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(warp(x, rows, cols, threads=threads), warp(x, rows, cols, threads=1))
    assert calls == [threads, 1]  # 70 images: enough for 2 or 3 blocks of at least 16
    assert warp(x[:20], rows[:20], cols[:20], threads=threads).shape == (20, 1, 28, 28)
    assert calls[-1] == 1  # 20 images: one block
    fields = [elastic_displacement(np.random.default_rng(5), 70, 28, 28, 34.0, 4.0, threads=t) for t in (1, threads)]
    for one, several in zip(*fields):
        np.testing.assert_array_equal(one, several)


def test_elastic_field_is_smooth_and_scales_with_alpha():
    dy1, dx1 = elastic_displacement(np.random.default_rng(3), 5, 28, 28, alpha=1.0, sigma=4.0)
    dy2, _ = elastic_displacement(np.random.default_rng(3), 5, 28, 28, alpha=2.0, sigma=4.0)
    assert dy1.shape == dx1.shape == (5, 28, 28)
    np.testing.assert_allclose(dy2, 2 * dy1, rtol=1e-5)
    step = np.abs(np.diff(dy1, axis=2)).mean()
    assert step < 0.3 * np.abs(dy1).mean()  # neighbours move together
    rough = np.random.default_rng(3).uniform(-1, 1, (5, 28, 28))
    assert np.abs(np.diff(rough, axis=2)).mean() > np.abs(rough).mean()  # unlike raw noise
    assert not np.allclose(dy1[0], dy1[1])  # one field per image


def test_same_seed_same_batch_different_seed_different():
    x = batch(n=8, h=28, w=28)
    aug = dict(rotation=15, shift=2, scale=0.1, elastic_alpha=8, noise=0.05)
    a = Augmentation(**aug)(x, np.random.default_rng(0))
    b = Augmentation(**aug)(x, np.random.default_rng(0))
    c = Augmentation(**aug)(x, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == x.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    s1, s2 = Augmentation(seed=4), Augmentation(seed=4)
    np.testing.assert_array_equal(s1(x), s2(x))
    assert not np.array_equal(s1(x), s1(x))  # an object's own generator advances between calls


def test_no_op_augmentation_and_uint8_input():
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 5, 5), dtype=np.uint8)
    out = Augmentation(rotation=0, shift=0, scale=0)(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x / 255.0, rtol=1e-6)


def test_noise_has_the_requested_spread_and_is_clipped():
    x = np.full((64, 1, 16, 16), 0.5, np.float32)
    out = Augmentation(rotation=0, shift=0, scale=0, noise=0.1)(x, np.random.default_rng(0))
    assert abs((out - 0.5).std() - 0.1) < 0.005
    clipped = Augmentation(rotation=0, shift=0, scale=0, noise=2.0)(x, np.random.default_rng(0))
    assert clipped.min() == 0.0 and clipped.max() == 1.0


def test_rotation_range_is_respected():
    """A centred horizontal bar's orientation after augmentation stays within ±15 degrees."""
    x = np.zeros((200, 1, 29, 29), np.float32)
    x[:, 0, 14, 4:25] = 1.0
    out = Augmentation(rotation=15, shift=0, scale=0)(x, np.random.default_rng(0))[:, 0]
    r, c = np.mgrid[:29, :29] - 14.0
    w = out / out.sum(axis=(1, 2), keepdims=True)
    cov_rc = (w * r * c).sum(axis=(1, 2))
    cov_cc = (w * c * c).sum(axis=(1, 2))
    cov_rr = (w * r * r).sum(axis=(1, 2))
    angles = np.degrees(0.5 * np.arctan2(2 * cov_rc, cov_cc - cov_rr))
    assert np.abs(angles).max() <= 15.5 and np.abs(angles).max() > 12  # bounded, and the range is used
    assert angles.min() < -5 < 5 < angles.max()  # both directions


@pytest.mark.parametrize(
    "kwargs, message",
    [({"rotation": -1}, "rotation must be >= 0"), ({"scale": 1.0}, "scale must be < 1"),
     ({"elastic_sigma": 0}, "elastic_sigma must be > 0"), ({"fill": "wrap"}, "fill must be one of"),
     ({"shear": -0.1}, "shear must be >= 0"), ({"thickness": 1.5}, "thickness is a share"),
     ({"blur": -1}, "blur must be >= 0")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Augmentation(**kwargs)


def test_needs_a_batch():
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        Augmentation()(np.zeros((28, 28), np.float32))


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_grid_png(tmp_path, channels, mode):
    images = np.random.default_rng(0).integers(0, 256, (3, channels, 10, 12), dtype=np.uint8)
    path = save_augmentation_grid(images, tmp_path / "sub" / "grid.png", copies=4, zoom=2)
    picture = Image.open(path)
    assert picture.mode == mode
    assert picture.size == ((5 * 13 + 1) * 2, (3 * 11 + 1) * 2)  # (width, height) with 1-px borders, zoom 2
    pixels = np.asarray(picture)
    first_tile = pixels[2:22:2, 2:26:2]  # row 0, column 0: the original, unchanged
    expected = images[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(first_tile.reshape(expected.shape), expected)
    second_tile = pixels[2:22:2, 28:52:2].reshape(expected.shape)
    assert not np.array_equal(second_tile, expected)  # augmented copy


def test_grid_rejects_odd_channel_counts(tmp_path):
    with pytest.raises(ShapeError):
        save_augmentation_grid(np.zeros((2, 2, 8, 8), np.uint8), tmp_path / "g.png")


def vertical_bar(n=1, size=15, width=3):
    x = np.zeros((n, 1, size, size), np.float32)
    x[:, :, 2:-2, size // 2 - width // 2 : size // 2 + width // 2 + 1] = 1.0
    return x


def test_shear_slants_rows_in_proportion_to_their_height():
    rows, cols = affine_source_coords(np.zeros(1), np.ones(1), np.zeros((1, 2)), 9, 9, shears=np.array([0.5]))
    np.testing.assert_allclose(rows[0], np.arange(9)[:, None] * np.ones((1, 9)))  # rows unchanged
    # row r reads the columns 0.5 * (r - 4) to the side: the centre row not at all, rows 0 and 8 two each way
    np.testing.assert_allclose(cols[0, 4], np.arange(9))
    np.testing.assert_allclose(cols[0, 8] - cols[0, 0], 4.0)
    bar = vertical_bar()
    slanted = Augmentation(rotation=0, shift=0, scale=0, shear=0.4, seed=3)(bar)
    top, bottom = (np.average(np.arange(15), weights=slanted[0, 0, r]) for r in (3, 11))
    assert abs(top - bottom) > 1.5  # the bar leans
    assert abs(slanted.sum() - bar.sum()) / bar.sum() < 0.05  # a slant moves ink, it does not add any


def test_thickness_grows_and_shrinks_strokes_by_about_a_pixel():
    bar = vertical_bar(n=3)
    out = change_thickness(bar, np.array([1, 0, -1]))
    widths = (out[:, 0, 7] > 0.5).sum(axis=1)
    assert list(widths) == [4, 3, 2]
    np.testing.assert_array_equal(out[1], bar[1])


def test_blur_spreads_ink_and_keeps_its_amount():
    bar = vertical_bar(n=2)
    out = blur_each(bar, np.array([0.0, 1.0]))
    np.testing.assert_array_equal(out[0], bar[0])
    assert out[1].max() < 0.95 and (out[1] > 0.05).sum() > (bar[1] > 0.05).sum()
    assert abs(out[1].sum() - bar[1].sum()) / bar[1].sum() < 0.02


def test_pixel_options_are_drawn_per_image_from_the_seed():
    x = np.repeat(vertical_bar(), 40, axis=0)
    augment = Augmentation(rotation=0, shift=0, scale=0, thickness=1.0, blur=0.8)
    a, b = augment(x, np.random.default_rng(5)), augment(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    ink = (a > 0.5).sum(axis=(1, 2, 3))
    assert ink.min() < (x[0] > 0.5).sum() < ink.max()  # some thinner, some thicker
