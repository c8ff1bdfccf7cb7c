"""``cnnlab export`` (a model to ONNX or PyTorch) and ``cnnlab import`` (PyTorch weights into cnnlab).

::

    cnnlab export runs/<run> --format onnx -o model.onnx      # opset 17, runs in onnxruntime
    cnnlab export model.safetensors -o model.pt               # format from the suffix: .onnx, .pt/.pth
    cnnlab import model.pt --arch lenet5 -o model.safetensors # the reverse, checked name by name

Heavy imports (onnx, torch, the engine) happen inside the commands. Every output is written to a
temporary file and renamed into place, so an existing file is never left half written.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..engine.errors import ConfigError

FORMATS = {"onnx": (".onnx",), "torch": (".pt", ".pth")}
ARCH_HELP = "Architecture preset the weights belong to: mlp, mlp:784-30-10, lenet5, vgg-mini, keras-mnist, cnn-bn."


def _format_of(out: str, fmt: str | None) -> str:
    """The export format: ``--format``, else the one the suffix of ``-o`` names."""
    if fmt is not None:
        return fmt
    suffix = Path(out).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    raise ConfigError(f"cannot tell the format from {out!r}: give --format onnx or --format torch "
                      f"(or end the file name in .onnx, .pt or .pth)")


def _refuse_overwriting(out: str, *sources: str | None) -> None:
    """An output that is one of the inputs would replace the user's model with another format: refuse."""
    target = Path(out)
    for source in sources:
        if source is None or not target.exists():
            continue
        candidate = Path(source) / "model.safetensors" if Path(source).is_dir() else Path(source)
        if candidate.exists() and os.path.samefile(candidate, target):
            raise ConfigError(f"-o {out} is the input model itself; choose another output file")


@click.command("export")
@click.argument("model", required=False, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)),
              help="onnx (opset 17) or torch (state dict + nn.Sequential description).  [from the -o suffix]")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
def export(model, fmt, out):
    """Write MODEL as an ONNX file or a PyTorch .pt file.

    MODEL is a model file, a run folder or a bundled model's name (digits, lenet5, fashion);
    without it, the bundled digit model. The preprocessing the model
    expects (scale, mean, std, polarity, size) and its class names go into the file's metadata.
    """
    from ..training.cli import _model_and_folder

    fmt = _format_of(out, fmt)
    _refuse_overwriting(out, model)
    if fmt == "onnx":
        from .onnx_export import OPSET, export_onnx, require_onnx

        require_onnx()  # a missing package is reported before the model is read
        net, _, label = _model_and_folder(model)
        export_onnx(net, out)
        click.echo(f"wrote {out}: {label} as ONNX opset {OPSET}, input 'input' (N, "
                   f"{', '.join(map(str, net.input_shape))}) float32, output 'output' (N, {net.output_shape[-1]})")
    else:
        from .torch_bridge import require_torch, torch_code
        from .torch_export import export_torch

        require_torch()
        net, _, label = _model_and_folder(model)
        export_torch(net, out)
        click.echo(f"wrote {out}: {label} as a PyTorch state dict and the nn.Sequential it loads into:\n\n"
                   f"{torch_code(net)}\n\n"
                   f"Rebuild it (docs/export.md): bundle = torch.load({out!r}, weights_only=True); "
                   f"net = nn.Sequential(*[getattr(nn, m['type'])(**m['kwargs']) for m in bundle['modules']]); "
                   f"net.load_state_dict(bundle['state_dict']); net.eval()")


@click.command("import")
@click.argument("weights", type=click.Path())
@click.option("--arch", required=True, help=ARCH_HELP)
@click.option("--input-shape", default="1,28,28", show_default=True, help="Shape of one sample, C,H,W.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(min=1), help="Number of classes.")
@click.option("--activation", help="Activation of the preset's hidden layers, if not its default.")
@click.option("--pooling", help="Pooling of the preset (max or avg), if not its default.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Model file to write (.safetensors).")
def import_weights(weights, arch, input_shape, classes, activation, pooling, out):
    """Read the PyTorch weights in WEIGHTS (.pt) into a cnnlab model file.

    WEIGHTS is a file written by `cnnlab export --format torch` or torch.save(net.state_dict(), path) of an
    nn.Sequential laid out as `cnnlab export` writes it (`cnnlab.interop.torch_bridge.torch_code` prints it). It is
    read with torch.load(weights_only=True): no code in it is ever run. Every name and shape must match
    the architecture; otherwise nothing is written.
    """
    from ..training.presets import build
    from ..cli_types import parse_shape
    from ..io import save_model
    from .torch_bridge import from_torch, require_torch
    from .torch_export import check_extras, check_same_architecture, read_torch_file

    require_torch()
    _refuse_overwriting(out, weights)
    model = build(arch, parse_shape(input_shape), classes, seed=0, activation=activation, pooling=pooling)
    state, extras = read_torch_file(weights)
    check_same_architecture(extras, model, weights)
    preprocessing, class_names = check_extras(extras, model, weights)
    from_torch(state, model, what=f"the weights in {weights}")
    save_model(model, out, class_names=class_names, preprocessing=preprocessing,
               extra={"imported_from": Path(weights).name})
    click.echo(f"wrote {out}: {arch}, {model.n_params:,} parameters, from {weights}")
