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
