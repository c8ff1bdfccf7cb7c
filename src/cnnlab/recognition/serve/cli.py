"""``cnnlab predict`` and ``cnnlab serve``: click commands for the lead to register in ``cnnlab.cli``::

    from .serve.cli import predict, serve
    cli.add_command(predict)
    cli.add_command(serve)

Heavy imports (the model, FastAPI, uvicorn) happen inside the commands, so ``cnnlab --help`` stays fast.
Errors a user can cause are :class:`~cnnlab.engine.errors.CnnlabError` and become one line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..calibration import percent

MODEL_HELP = ("model file (.safetensors), or a bundled model: digits (cnn-bn on MNIST with a 'not a digit' "
              "class, the default), lenet5 (the course's LeNet-5) or fashion (vgg-mini on Fashion-MNIST)")


def _load(model_path):
    """A model file, a bundled model by name (``digits``, ``lenet5``, ``fashion``), or the default bundled one."""
    from ...engine.errors import ModelFileError
    from ...io import BUNDLED_MODELS, load_bundled_model, load_model

    if model_path is None:
        return load_bundled_model()
    if str(model_path) in BUNDLED_MODELS and not Path(model_path).exists():
        return load_bundled_model(str(model_path))
    if not Path(model_path).exists() and not Path(model_path).suffix:  # a name, not a path: say which exist
        raise ModelFileError(f"no model file or bundled model called {str(model_path)!r}; bundled: "
                             f"{', '.join(BUNDLED_MODELS)}")
    return load_model(model_path)


def _show(picture, result: dict, out: Path, thin_fat_strokes: bool = True) -> None:
    """Save the strip of preprocessing stages (original -> flattened -> ink mask -> chosen mark ->
    20x20 -> 28x28) with the answer, or the reason for none, underneath (see :mod:`cnnlab.recognition.stages`)."""
    import io

    from ...atomic import write_bytes
    from ..preprocess import NoDigitError, prepare_digit
    from ..stages import stage_strip

    stages: dict = {}
    try:
        prepare_digit(picture, single="number" not in result, stages=stages, thin_fat_strokes=thin_fat_strokes)
    except NoDigitError:
        pass  # the stages reached so far are drawn; the message says why it stopped
    if result["prediction"] is None:
        caption = result.get("message", "no answer")
    elif result.get("number") is not None:
        caption = f"number {result['number']}"
    else:
        best = result["top_k"][0]
        caption = f"answer: {best['label']} ({percent(best['probability'], 1)})"
    buffer = io.BytesIO()
    stage_strip(stages, caption).save(buffer, format="PNG")
    write_bytes(out, buffer.getvalue())


def example_pictures(number: bool) -> list[Path]:
    """The example pictures inside the package: single digits, or a written number with ``number``."""
    from importlib import resources

    folder = Path(str(resources.files("cnnlab") / "examples"))
    names = ["number-2026.png"] if number else ["seven.png", "three.png"]
    return [folder / name for name in names]


@click.command()
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--example", is_flag=True,
              help="recognize the hand-drawn example pictures that ship with cnnlab (no files needed)")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), help=MODEL_HELP)
@click.option("--top-k", "k", type=click.IntRange(1, 10), default=5, show_default=True, help="classes to list")
@click.option("--number", is_flag=True, help="read each picture as a whole number (several digits)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the same fields as POST /api/predict)")
@click.option("--show", type=click.Path(dir_okay=False, path_type=Path),
              help="save the preprocessing stages (original ... 28x28) as a strip to this PNG (one picture only)")
def predict(images, example, model_path, k, number, as_json, show):
    """Recognize the digit (or, with --number, the number) in each picture.

    Pictures go through the same steps as MNIST's digits (light on dark, 20x20 box, centred by mass)
    before the network sees them: use --show to see that picture.
    """
    from ...engine.errors import CnnlabError, ConfigError
    from .recognize import Recognizer

    if example:
        images = (*images, *example_pictures(number))
    if not images:
        raise click.UsageError("give one or more pictures, or --example to use the ones that ship with cnnlab")
    if show and len(images) != 1:
        raise ConfigError(f"--show saves one picture, but {len(images)} were given")
    recognizer = Recognizer(_load(model_path), top_k=k)
    names = _class_names(recognizer.model)
    results, failed = [], 0
    for path in images:
        try:
            result = recognizer.recognize(path, number=number)
        except CnnlabError as exc:  # one bad picture is reported in its own result; the others go on
            if len(images) == 1:
                raise CnnlabError(f"{path}: {exc}") from None
            failed += 1
            results.append({"file": str(path), "prediction": None, "error": str(exc)})
            if not as_json:
                click.echo(f"{path}:\n  error: {exc}")
            continue
        if show:
            _show(path, result, show, recognizer.thin_fat_strokes)
        result = {"file": str(path), **{key: v for key, v in result.items() if key != "processed"}}
        for digit in result.get("digits", []):
            digit.pop("processed", None)
        results.append(result)
        if not as_json:
            _print_result(result, number, names)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    if show:
        click.echo(f"saved {show}", err=as_json)
    if failed:
        click.echo(f"{failed} of {len(images)} pictures could not be read", err=True)
        return 1
    return 0


def _class_names(model) -> list[str] | None:
    """The class names stored with the model (a model trained on an image folder: its sub-folder names),
    or None when they are just the indices 0, 1, 2... (MNIST)."""
    names = (getattr(model, "info", None) or {}).get("class_names") or []
    return None if [str(n) for n in names] == [str(i) for i in range(len(names))] else [str(n) for n in names]


def _print_result(result: dict, number: bool, names: list[str] | None = None) -> None:
    def name(label):  # the class's stored name; an index the names do not cover stays an index
        return names[label] if names and isinstance(label, int) and 0 <= label < len(names) else label

    click.echo(f"{result['file']}:")
    if result["prediction"] is None:
        click.echo(f"  {result['message']}")
        return
    if number:
        confidences = " ".join(f"{d['label']}:{percent(d['probability'], 0)}" for d in result["digits"])
        click.echo(f"  number {result['number']}   ({confidences})")
        return
    for entry in result["top_k"]:
        bar = "#" * round(entry["probability"] * 30)
        click.echo(f"  {entry.get('name', name(entry['label']))}  {percent(entry['probability'], 2):>7}  {bar}")
    click.echo(f"  answer: {result.get('class_name', name(result['prediction']))}")


@click.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), help=MODEL_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every interface)")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 100), default=5.0, show_default=True,
              help="largest request body accepted")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="pictures recognized at the same time")
@click.option("--queue", type=click.IntRange(0, 10_000), default=16, show_default=True,
              help="requests allowed to wait for a worker; past that, 503 with Retry-After")
def serve(model_path, host, port, max_upload_mb, workers, queue):
    """Serve the drawing page and the prediction API (open http://HOST:PORT/ in a browser)."""
    from .app import run_server

    model = _load(model_path)  # a bad model file fails here, as one line, before uvicorn starts
    click.echo(f"cnnlab: drawing page at http://{host}:{port}/  (API docs at /docs; Ctrl-C stops)", err=True)
    run_server(host=host, port=port, max_upload_bytes=int(max_upload_mb * 1_000_000), model=model,
               workers=workers, queue=queue)
