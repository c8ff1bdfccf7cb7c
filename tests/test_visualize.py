"""Filter grids, feature-map figures, and the ``show filters`` / ``show activations`` commands.

The figures are checked through what they draw (the image arrays inside the axes), not by pixels.
"""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from cnnlab.training.presets import build
from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.inspect_cli import show
from cnnlab.io import save_model
from cnnlab.visualize import (feature_maps_figure, filters_figure, first_conv_weights, model_input)


def drawn_images(fig):
    """The arrays of every image drawn in the figure (subfigures included), in drawing order."""
    axes = list(fig.axes)  # a figure's axes include those of its subfigures
    for sub in getattr(fig, "subfigs", []):
        axes += [ax for ax in sub.axes if ax not in axes]
    return [im.get_array() for ax in axes for im in ax.get_images()]


@pytest.fixture
def seven(tmp_path):
    """A dark '7' drawn on white paper, like a photo of a written digit."""
    image = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(image).line([(25, 25), (95, 25), (55, 100)], fill=0, width=9)
    path = tmp_path / "seven.png"
    image.save(path)
    return path


def test_first_conv_weights_and_a_model_without_conv():
    name, w = first_conv_weights(build("lenet5", seed=0))
    assert name == "conv2d_0" and w.shape == (6, 1, 5, 5)
    with pytest.raises(ConfigError, match="no convolutional layer.*Dense"):
        first_conv_weights(build("mlp", seed=0))


def test_filters_grid_draws_each_kernel_on_one_shared_scale():
    w = np.random.default_rng(0).normal(size=(6, 1, 5, 5))
    w[2] *= 10  # one strong filter sets the scale for all
    fig = filters_figure(w)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 6
    for kernel, im in zip(w, images):
        np.testing.assert_allclose(im.get_array(), kernel[0])
        assert im.get_clim() == pytest.approx((-np.abs(w).max(), np.abs(w).max()))
    assert "6 filters 5x5" in fig._suptitle.get_text()


def test_filters_grid_limits_the_count_and_draws_rgb_kernels():
    w = np.random.default_rng(1).normal(size=(20, 3, 3, 3))
    fig = filters_figure(w, max_filters=8)
    arrays = drawn_images(fig)
    assert len(arrays) == 8 and arrays[0].shape == (3, 3, 3)  # H, W, RGB
    assert all(0 <= a.min() and a.max() <= 1 for a in arrays)
    assert "first 8 shown" in fig._suptitle.get_text()
    with pytest.raises(ShapeError, match=r"\(F, C, kh, kw\)"):
        filters_figure(np.zeros((3, 3)))


def test_feature_maps_figure_shows_input_and_each_block():
    model = build("vgg-mini", seed=0)
    x = np.random.default_rng(2).random((1, 1, 28, 28), dtype=np.float32)
    maps = model.feature_maps(x)
    fig = feature_maps_figure(x, maps, max_maps=5)
    arrays = drawn_images(fig)
    assert len(arrays) == 1 + 5 * len(maps)  # input, then at most 5 maps per block
    np.testing.assert_allclose(arrays[0], x[0, 0])
    first = maps[0][1][0, 0]
    expected = (first - first.min()) / (first.max() - first.min())
    np.testing.assert_allclose(arrays[1], expected, rtol=1e-6)
    titles = [sub._suptitle.get_text() for sub in fig.subfigs[1:]]
    assert titles[0].startswith("conv2d_0: 16 maps 28x28, first 5 shown") and "14x14" in titles[2]
    with pytest.raises(ConfigError, match="no feature maps"):
        feature_maps_figure(x, [])


def test_model_input_applies_the_stored_preprocessing():
    model = build("lenet5", seed=0)
    picture = np.full((28, 28), 0.5, np.float32)
    np.testing.assert_array_equal(model_input(picture, model), picture[None, None])
    model.info = {"preprocessing": {"mean": 0.1, "std": 0.2}}
    np.testing.assert_allclose(model_input(picture, model), np.full((1, 1, 28, 28), 2.0), rtol=1e-6)
    with pytest.raises(ShapeError, match="expects inputs of shape"):
        model_input(np.zeros((32, 32)), model)


def test_show_filters_command_writes_a_png(tmp_path):
    path = save_model(build("lenet5", seed=0), tmp_path / "m.safetensors")
    out = tmp_path / "filters.png"
    result = CliRunner().invoke(show, ["filters", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG" and str(out) in result.output
    result = CliRunner().invoke(show, ["filters", str(save_model(build("mlp", seed=0), tmp_path / "mlp.safetensors"))])
    assert isinstance(result.exception, ConfigError)


def test_show_activations_command_writes_a_png_and_reports_the_guess(tmp_path, seven):
    model = build("lenet5", seed=0)
    path = save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "maps.png"
    result = CliRunner().invoke(show, ["activations", str(path), str(seven), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "wrote 2 layer(s) of feature maps" in result.output  # lenet5 has two conv blocks
    from cnnlab.recognition.preprocess import prepare_digit

    guess = int(model.predict(prepare_digit(seven)[None, None])[0])
    assert f"predicted {guess} " in result.output


def test_show_activations_argument_errors(tmp_path, seven):
    result = CliRunner().invoke(show, ["activations", "a", "b", "c"])
    assert isinstance(result.exception, ConfigError) and "[MODEL] IMAGE" in str(result.exception)
    result = CliRunner().invoke(show, ["activations", str(tmp_path / "none.png")])
    assert isinstance(result.exception, ConfigError) and "picture not found" in str(result.exception)


def test_show_filters_refuses_an_extension_matplotlib_cannot_write(tmp_path, capsys):
    from cnnlab.cli import main
    from cnnlab.plots import figure_format

    path = save_model(build("lenet5", seed=0), tmp_path / "m.safetensors")
    assert main(["show", "filters", str(path), "--out", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err
    assert "cannot draw a figure as .txt" in err and ".png" in err and "Traceback" not in err
    assert not (tmp_path / "x.txt").exists()
    assert figure_format("a.SVG") == "svg" and figure_format("noext") == "png"


def test_show_into_an_unwritable_place_is_a_one_line_error(tmp_path, capsys):
    from cnnlab.cli import main

    path = save_model(build("lenet5", seed=0), tmp_path / "m.safetensors")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["show", "filters", str(path), "--out", str(blocker / "filters.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and str(blocker) in err and err.count("\n") == 1
