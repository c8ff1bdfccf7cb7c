"""`python -m cnnlab` is the `cnnlab` command: same output, same exit codes."""

import subprocess
import sys

from cnnlab import __version__


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=120)


def test_python_m_cnnlab_runs_the_command_line():
    done = run_module("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"cnnlab, version {__version__}"
    done = run_module("--help")
    assert done.returncode == 0 and "export" in done.stdout and "import" in done.stdout


def test_python_m_cnnlab_passes_on_the_exit_code_of_a_user_mistake():
    done = run_module("summary", "--arch", "resnet")
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown architecture 'resnet'") and "Traceback" not in done.stderr


def test_shell_completion_completes_command_names():
    """click's completion (docs: README), through `python -m cnnlab` as through the script."""
    import os

    env = {**os.environ, "_CNNLAB_COMPLETE": "bash_complete", "COMP_WORDS": "cnnlab exp", "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-m", "cnnlab"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.split() == ["plain,export"]
    env["_CNNLAB_COMPLETE"] = "bash_source"
    done = subprocess.run([sys.executable, "-m", "cnnlab"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "_cnnlab_completion" in done.stdout and "complete " in done.stdout
