"""``cnnlab --install-completion [bash|zsh|fish]``: turn on click's shell completion for cnnlab.

Completion itself is click's: the shell asks ``_CNNLAB_COMPLETE=<shell>_source cnnlab`` for a script once
per session. Installing means adding the one line that does so to the shell's start-up file:

========  ===================================  ==================================================
shell     file                                 line
========  ===================================  ==================================================
bash      ``~/.bashrc``                        ``eval "$(_CNNLAB_COMPLETE=bash_source cnnlab)"``
zsh       ``$ZDOTDIR/.zshrc`` (or ``~``)       ``eval "$(_CNNLAB_COMPLETE=zsh_source cnnlab)"``
fish      ``~/.config/fish/completions/cnnlab.fish``  ``_CNNLAB_COMPLETE=fish_source cnnlab | source``
========  ===================================  ==================================================

The line is added once (a second install changes nothing), the file is rewritten atomically (temporary
file + rename) with its permissions kept, and a start-up file that is a symbolic link (dotfile managers)
is edited where it points, never replaced by a copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import write_text
from .engine.errors import ConfigError

SHELLS = ("bash", "zsh", "fish")


def completion_line(shell: str) -> str:
    """The start-up line that loads cnnlab's completion in ``shell``."""
    if shell == "fish":
        return "_CNNLAB_COMPLETE=fish_source cnnlab | source"
    return f'eval "$(_CNNLAB_COMPLETE={shell}_source cnnlab)"'


def startup_file(shell: str, home: Path | None = None) -> Path:
    """Where the line goes for ``shell`` (see the table above)."""
    home = Path(home) if home is not None else Path.home()
    if shell == "bash":
        return home / ".bashrc"
    if shell == "zsh":
        return Path(os.environ.get("ZDOTDIR") or home) / ".zshrc"
    return home / ".config" / "fish" / "completions" / "cnnlab.fish"


def detect_shell() -> str:
    """The user's shell from ``$SHELL`` (``/bin/zsh`` -> ``zsh``), or a ConfigError asking to name one."""
    name = Path(os.environ.get("SHELL", "")).name
    if name not in SHELLS:
        raise ConfigError(f"cannot tell the shell from SHELL={os.environ.get('SHELL', '')!r}; "
                          f"expected --install-completion with one of: {', '.join(SHELLS)}")
    return name


def install_completion(shell: str, home: Path | None = None) -> tuple[Path, bool]:
    """Add the completion line of ``shell`` to its start-up file; returns ``(file, whether it changed)``."""
    if shell not in SHELLS:
        raise ConfigError(f"unknown shell {shell!r}; expected one of: {', '.join(SHELLS)}")
    path = startup_file(shell, home)
    line = completion_line(shell)
    target = path.resolve() if path.is_symlink() else path
    text = target.read_text("utf-8") if target.is_file() else ""
    if line in text.splitlines():
        return path, False
    mode = target.stat().st_mode & 0o7777 if target.exists() else None
    prefix = text if not text or text.endswith("\n") else text + "\n"
    write_text(target, f"{prefix}# cnnlab: shell completion (added by `cnnlab --install-completion`)\n{line}\n")
    if mode is not None:
        os.chmod(target, mode)
    return path, True
