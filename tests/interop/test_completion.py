"""``cnnlab --install-completion``: the right line in the right file, once, without harming the file."""

from __future__ import annotations

import os

import pytest

from cnnlab.cli import main
from cnnlab.completion import completion_line, install_completion
from cnnlab.engine.errors import ConfigError

BASH_LINE = 'eval "$(_CNNLAB_COMPLETE=bash_source cnnlab)"'


def test_bash_line_added_once_and_the_rest_of_the_file_kept(tmp_path):
    rc = tmp_path / ".bashrc"
    rc.write_text("export A=1")  # no final newline
    os.chmod(rc, 0o600)
    assert install_completion("bash", tmp_path) == (rc, True)
    lines = rc.read_text().splitlines()
    assert lines[0] == "export A=1" and lines[-1] == BASH_LINE
    assert install_completion("bash", tmp_path) == (rc, False)
    assert rc.read_text().count(BASH_LINE) == 1
    assert rc.stat().st_mode & 0o777 == 0o600  # permissions kept
    assert [p.name for p in tmp_path.iterdir()] == [".bashrc"]  # no temporary file left


def test_symlinked_startup_file_is_edited_where_it_points(tmp_path, monkeypatch):
    monkeypatch.delenv("ZDOTDIR", raising=False)
    real = tmp_path / "dotfiles" / "zshrc"
    real.parent.mkdir()
    real.write_text("setopt autocd\n")
    (tmp_path / ".zshrc").symlink_to(real)
    install_completion("zsh", tmp_path)
    assert (tmp_path / ".zshrc").is_symlink()
    assert real.read_text() == ("setopt autocd\n# cnnlab: shell completion (added by `cnnlab --install-completion`)\n"
                                'eval "$(_CNNLAB_COMPLETE=zsh_source cnnlab)"\n')


def test_fish_gets_its_own_completions_file(tmp_path):
    path, changed = install_completion("fish", tmp_path)
    assert changed and path == tmp_path / ".config" / "fish" / "completions" / "cnnlab.fish"
    assert completion_line("fish") == "_CNNLAB_COMPLETE=fish_source cnnlab | source"
    assert path.read_text().splitlines()[-1] == completion_line("fish")


def test_cli_option_detects_the_shell_or_says_what_it_expected(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ZDOTDIR", raising=False)
    monkeypatch.setenv("SHELL", "/usr/bin/bash")
    assert main(["--install-completion"]) == 0
    assert capsys.readouterr().out.startswith(f"added {tmp_path / '.bashrc'}")
    assert (tmp_path / ".bashrc").read_text().splitlines()[-1] == BASH_LINE
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    assert main(["--install-completion"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot tell the shell from SHELL='/bin/tcsh'; expected --install-completion "
                          "with one of: bash, zsh, fish") and "Traceback" not in err
    assert main(["--install-completion", "zsh"]) == 0
    assert (tmp_path / ".zshrc").is_file()
    with pytest.raises(ConfigError, match="unknown shell 'csh'"):
        install_completion("csh", tmp_path)
