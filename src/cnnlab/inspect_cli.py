"""``cnnlab bench`` (how fast, and where the time goes) and ``cnnlab show`` (what a network learned).

Click groups for the lead to register in :mod:`cnnlab.cli`::

    from .inspect_cli import bench, show
    cli.add_command(bench)
    cli.add_command(show)

::

    cnnlab bench layers --arch lenet5 --batch 100      # forward/backward ms per layer, share of a step
    cnnlab bench epoch --arch lenet5 --arch vgg-mini   # images/s per available device (cpu, gpu)
    cnnlab show filters runs/lenet5-mnist-.../ --out filters.png
    cnnlab show activations model.safetensors seven.png --out maps.png

Heavy imports (the engine, matplotlib, the data) happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .engine.device import DEVICES

ARCH_HELP = "Architecture preset: mlp, mlp:784-30-10, lenet5, vgg-mini, keras-mnist, cnn-bn."
DEVICE_CHOICE = click.Choice(DEVICES)


def _build_for_bench(arch: str, input_shape, num_classes: int = 10):
    """A preset to time; an MLP gets softmax outputs so every preset trains with the same loss."""
    from .training.presets import build, parse_arch

    options = {"output": "softmax"} if parse_arch(arch)[0] == "mlp" else {}
    return build(arch, input_shape, num_classes, seed=0, **options)


# -- bench -----------------------------------------------------------------------------------------------
@click.group()
def bench() -> None:
    """Time the engine: per layer (where a training step goes) and per epoch (per device)."""


@bench.command("layers")
@click.option("--arch", default="lenet5", show_default=True, help=ARCH_HELP)
@click.option("--batch", default=100, show_default=True, type=click.IntRange(1), help="Mini-batch size.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1), help="Timed steps (median reported).")
@click.option("--device", default="cpu", show_default=True, type=DEVICE_CHOICE, help="Where to compute.")
@click.option("--dataset", default="mnist", show_default=True, help="Images to time on (random if not present).")
@click.option("--data-dir", help="Data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
def bench_layers(arch, batch, steps, device, dataset, data_dir, as_json):
    """Forward and backward time of every layer in a training step, and its share of the step.

    The summary by layer class answers "which are faster, convolutional or dense layers?": share of the
    time, arithmetic speed (GFLOP/s) and time per thousand parameters.
    """
    from .engine.device import to_device
    from .engine.optim import Adam
    from .bench.timing import benchmark_images, profile_layers

    x, y, source = benchmark_images(batch, dataset, data_dir)
    model = _build_for_bench(arch, x.shape[1:], 10)
    to_device(model, device)
    profile = profile_layers(model, x, y, optimizer=Adam(), steps=steps, device=device, arch=arch)
    if as_json:
        click.echo(json.dumps({**profile.to_dict(), "data": source}, indent=2))
        return
    click.echo(profile.format())
    conv, dense = profile.by_group().get("conv"), profile.by_group().get("dense")
    if conv and dense and conv["gflops"] and dense["gflops"]:
        click.echo(f"\nconv layers: {conv['share']:.0%} of the time for {conv['params']:,} parameters; "
                   f"dense layers: {dense['share']:.0%} for {dense['params']:,}. Per operation, dense layers "
                   f"compute at {dense['gflops'] / conv['gflops']:.1f}x the speed of conv layers.")
    click.echo(f"(images: {source})")


@bench.command("epoch")
@click.option("--arch", "archs", multiple=True, help=f"{ARCH_HELP} Repeat for several.  [lenet5]")
@click.option("--device", "devices", multiple=True, type=DEVICE_CHOICE,
              help="cpu or gpu; repeat for both.  [every available device]")
@click.option("--images", default=5000, show_default=True, type=click.IntRange(1), help="Images per epoch.")
@click.option("--batch", default=100, show_default=True, type=click.IntRange(1), help="Mini-batch size.")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1), help="Timed epochs (median).")
@click.option("--dataset", default="mnist", show_default=True, help="Images to time on (random if not present).")
@click.option("--data-dir", help="Data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_epoch(archs, devices, images, batch, epochs, dataset, data_dir, as_json):
    """Epoch time and images per second of training (Adam) on each device, and the CPU/GPU ratio.

    Asking for --device gpu without CuPy or a GPU is an error; by default every available device is timed.
    """
    from .engine.backend import get_xp
    from .engine.device import available_devices
    from .bench.timing import benchmark_images, epoch_speed

    archs = archs or ("lenet5",)
    if devices:
        for device in devices:
            get_xp(device)  # a clear error now, before any timing, when CuPy or the GPU is missing
    else:
        devices = tuple(available_devices())
    x, y, source = benchmark_images(images, dataset, data_dir)
    results = []
    for arch in archs:
        for device in devices:
            speed = epoch_speed(_build_for_bench(arch, x.shape[1:], 10), x, y, device=device, batch=batch,
                                epochs=epochs)
            speed.arch = arch
            results.append(speed.to_dict())
    if as_json:
        click.echo(json.dumps({"data": source, "results": results}, indent=2))
        return
    click.echo(f"{len(x):,} {source} images, batch {batch}, Adam; median of {epochs} epoch(s)")
    click.echo(f"{'arch':<14}{'device':<8}{'epoch (s)':>10}{'images/s':>11}{'60k epoch (s)':>15}")
    for r in results:
        click.echo(f"{r['arch']:<14}{r['device']:<8}{r['epoch_s']:>10.2f}{r['images_per_s']:>11,.0f}"
                   f"{r['epoch_s_60k']:>15.1f}")
    for arch in archs:
        by_device = {r["device"]: r for r in results if r["arch"] == arch}
        if "cpu" in by_device and "gpu" in by_device:
            click.echo(f"{arch}: the GPU is {by_device['gpu']['images_per_s'] / by_device['cpu']['images_per_s']:.1f}x "
                       f"as fast as the CPU")


# -- show ------------------------------------------------------------------------------------------------
@click.group()
def show() -> None:
    """Look inside a trained network: its first-layer filters, the feature maps of a picture."""


def _model_and_picture(paths):
    """``[MODEL] IMAGE`` -> (model, its label, the picture's path, the picture prepared as for prediction
    (28x28 in [0, 1]), the model's input batch (1, ...))."""
    from .engine.errors import ConfigError
    from .recognition.preprocess import prepare_digit
    from .visualize import model_input

    if len(paths) > 2:
        raise ConfigError(f"expected [MODEL] IMAGE, received {len(paths)} arguments: {' '.join(paths)}")
    model_path, image_path = (None, paths[0]) if len(paths) == 1 else paths
    if not Path(image_path).is_file():
        raise ConfigError(f"picture not found: {image_path}")
    net, label = _model(model_path)
    picture = prepare_digit(image_path)
    return net, label, image_path, picture, model_input(picture, net)


def _model(model_path):
    from .training.cli import _model_and_folder

    model, _, label = _model_and_folder(model_path)
    return model, label


@show.command("filters")
@click.argument("model", required=False, type=click.Path())
@click.option("--out", default="filters.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG (or SVG/PDF) file to write.")
@click.option("--max-filters", default=64, show_default=True, type=click.IntRange(1), help="Filters drawn at most.")
def show_filters(model, out, max_filters):
    """Draw the kernels of MODEL's first convolution as a grid.

    MODEL is a model file, a run folder or a bundled model's name (digits, lenet5, fashion);
    without it, the bundled digit model.
    """
    from .plots import figure_format, save_figure
    from .visualize import filters_figure, first_conv_weights

    figure_format(out)  # a bad extension is refused before the model is read
    net, label = _model(model)
    name, weights = first_conv_weights(net)
    save_figure(filters_figure(weights, max_filters=max_filters,
                               title=f"{Path(label).name}: {name}, {weights.shape[0]} filters "
                                     f"{weights.shape[2]}x{weights.shape[3]}"), out)
    click.echo(f"wrote {out}")


@show.command("activations")
@click.argument("paths", nargs=-1, required=True, metavar="[MODEL] IMAGE")
@click.option("--out", default="maps.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG (or SVG/PDF) file to write.")
@click.option("--max-maps", default=32, show_default=True, type=click.IntRange(1), help="Maps drawn per layer at most.")
def show_activations(paths, out, max_maps):
    """Draw the feature maps every convolution block of MODEL produces for the picture IMAGE.

    The picture is prepared as for prediction (cropped, centred, 28x28, light on dark). MODEL is a model
    file, a run folder or a bundled model's name; without it, the bundled digit model.
    """
    from .plots import figure_format, save_figure
    from .visualize import feature_maps_figure

    figure_format(out)
    net, label, image_path, picture, x = _model_and_picture(paths)
    maps = net.feature_maps(x)
    probabilities = net.predict_proba(x)[0]
    guess = int(probabilities.argmax())
    names = (getattr(net, "info", None) or {}).get("class_names") or [str(i) for i in range(len(probabilities))]
    save_figure(feature_maps_figure(picture, maps, max_maps=max_maps,
                                    title=f"{Path(image_path).name} through {Path(label).name}: predicted "
                                          f"{names[guess]} ({probabilities[guess]:.1%})"), out)
    click.echo(f"predicted {names[guess]} ({probabilities[guess]:.1%}); "
               f"wrote {len(maps)} layer(s) of feature maps to {out}")


@show.command("saliency")
@click.argument("paths", nargs=-1, required=True, metavar="[MODEL] IMAGE")
@click.option("--out", "-o", default="why.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG (or SVG/PDF) file to write.")
@click.option("--class", "chosen", type=click.IntRange(0), default=None,
              help="Also explain this class (default: only the predicted one).")
@click.option("--samples", default=25, show_default=True, type=click.IntRange(1),
              help="Noisy copies averaged by SmoothGrad.")
def show_saliency(paths, out, chosen, samples):
    """Why MODEL answered what it did for IMAGE: saliency, SmoothGrad and Grad-CAM, from its own backward pass.

    One row for the predicted class, and one for --class when given. The picture is prepared as for
    prediction. MODEL is a model file, a run folder or a bundled model's name (digits, lenet5, fashion);
    without it, the bundled digit model.
    """
    from .engine.errors import ConfigError
    from .explain import grad_cam, saliency, smoothgrad
    from .plots import figure_format, save_figure
    from .visualize import explanation_figure

    figure_format(out)
    net, label, image_path, picture, x = _model_and_picture(paths)
    probabilities = net.predict_proba(x)[0]
    names = (getattr(net, "info", None) or {}).get("class_names") or [str(i) for i in range(len(probabilities))]
    guess = int(probabilities.argmax())
    if chosen is not None and chosen >= len(probabilities):
        raise ConfigError(f"--class must be between 0 and {len(probabilities) - 1}, received {chosen}")
    classes = [guess] + ([chosen] if chosen is not None and chosen != guess else [])
    rows = []
    for c in classes:
        cam = grad_cam(net, x, c).upsampled(picture.shape)[0]
        rows.append((f"{names[c]} ({probabilities[c]:.1%})", saliency(net, x, c)[0].reshape(picture.shape),
                     smoothgrad(net, x, c, samples=samples)[0].reshape(picture.shape), cam))
    save_figure(explanation_figure(picture, rows, title=f"{Path(image_path).name} through {Path(label).name}: "
                                                        f"predicted {names[guess]}"), out)
    click.echo(f"predicted {names[guess]} ({probabilities[guess]:.1%}); wrote {out}")
