"""The layout is part of the product: one-way imports, no cycle, an engine a learner can read alone."""

import shutil
import subprocess
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"


def import_cycles(graph) -> list[tuple[str, str]]:
    """Every import ``a -> b`` (function-level imports included) for which ``b`` leads back to ``a``."""
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported != module and graph.find_shortest_chain(importer=imported, imported=module):
                cycles.append((module, imported))
    return cycles


def test_no_import_cycle_among_the_packages_modules():
    graph = grimp.build_graph("cnnlab", cache_dir=None)
    assert len(graph.modules) > 50  # the whole package was read
    assert import_cycles(graph) == []


def test_the_cycle_finder_sees_a_deferred_import(tmp_path, monkeypatch):
    """The check above can fail: a package whose second module imports the first inside a function."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def later():\n    from . import a\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic", cache_dir=None)
    assert ("cyclic.a", "cyclic.b") in import_cycles(graph)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is a test extra (pip install -e '.[test]')")
def test_the_layer_contract_in_pyproject_holds():
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=SRC.parents[1], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_engine_files_stay_short_enough_to_read():
    lengths = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in (SRC / "engine").rglob("*.py")}
    assert len(lengths) >= 15
    assert {name: n for name, n in lengths.items() if n >= 300} == {}


def test_import_cnnlab_keeps_its_public_api():
    """User code and the README use these names; the reorganisation moved modules, not the API."""
    import cnnlab
    from cnnlab.engine.layers import LAYER_TYPES

    for name in ("build", "fit", "evaluate", "load_model", "save_model", "load_bundled_model", "load_dataset",
                 "Sequential", *LAYER_TYPES):
        assert callable(getattr(cnnlab, name)), name
    model = cnnlab.Sequential([cnnlab.Conv2D(2, 3), cnnlab.ReLU(), cnnlab.Flatten(), cnnlab.Dense(3),
                               cnnlab.Softmax()], (1, 6, 6))
    assert model.output_shape == (3,)
    with pytest.raises(AttributeError):
        cnnlab.NoSuchThing  # noqa: B018
