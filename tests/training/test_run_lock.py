"""One training per run folder (issue 12, item 8): a second ``--resume`` of a run being trained is refused
with the trainer's PID; a lock left by a killed process is taken over, with a message."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.engine.errors import ConfigError
from cnnlab.training.lock import LOCK_NAME, RunLock

SRC = Path(__file__).resolve().parents[2] / "src"
HOLD = """
import sys, time
from cnnlab.training.lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""

TINY = ["--arch", "mlp:784-16-10", "--dataset", "mnist", "--val-split", "20", "--batch-size", "10",
        "--no-progress", "--no-test", "--optimizer", "sgd", "--lr", "0.05"]


def test_a_second_lock_is_refused_and_released_locks_leave_no_file(tmp_path):
    with RunLock(tmp_path):
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(ConfigError, match=rf"is being trained by process {os.getpid()} .*wait for it"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):  # free again
        pass


def test_an_unreadable_lock_file_nobody_holds_is_taken_silently(tmp_path):
    (tmp_path / LOCK_NAME).write_bytes(b"\xff\x00 not json")
    lines = []
    with RunLock(tmp_path, echo=lines.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert lines == []


def test_resume_while_another_process_trains_is_refused_then_a_dead_lock_is_taken_over(fake_mnist, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--data-dir", str(fake_mnist.data_dir), "--out", str(tmp_path), "--name", "r",
                 "--epochs", "1"]) == 0
    assert not (run / LOCK_NAME).exists()  # released when training ends
    capsys.readouterr()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
        out, err = capsys.readouterr()
        assert f"is being trained by process {holder.pid}" in err and "Traceback" not in out + err
        assert len(err.strip().splitlines()) == 1
        after = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir() if p.name != LOCK_NAME)
        assert after == before  # nothing of the run was touched
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing: its lock file stays behind
        holder.wait(timeout=30)
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid

    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    out, _ = capsys.readouterr()
    assert f"taking over the lock of process {holder.pid}" in out and "which no longer runs" in out
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 2
    assert not (run / LOCK_NAME).exists()
