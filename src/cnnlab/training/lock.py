"""One training process per run folder: ``run.lock`` names the process that trains it.

Two ``cnnlab train --resume RUN`` at once would both write ``checkpoint.safetensors`` and the metrics, each
overwriting the other's epochs. The first one takes the lock; the second is refused with the first one's
PID. The lock itself is the operating system's (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on the
open lock file, so it dies with its process: a lock file left behind by a killed process names a PID
that no longer holds it, and the next run takes it over, saying so. PID reuse is therefore harmless —
the PID in the file is only there to tell the user who is training.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..engine.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = "run.lock"


def _try_lock(fd: int) -> bool:
    """Lock the open file without waiting; False when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError (EWOULDBLOCK), or EACCES / EAGAIN on some systems
        return False
    return True


def _read_owner(fd: int) -> dict:
    """What the lock file says about its owner ({} when empty or not ours to understand)."""
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        owner = json.loads(os.read(fd, 4096).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict) -> str:
    if not owner.get("pid"):
        return "another process"
    text = f"process {owner['pid']}"
    if owner.get("host") and owner["host"] != socket.gethostname():
        text += f" on {owner['host']}"
    if owner.get("started"):
        text += f" (since {owner['started']})"
    return text


class RunLock:
    """``with RunLock(folder): ...`` — hold ``folder/run.lock`` for the duration; raises
    :class:`ConfigError` when another live process holds it."""

    def __init__(self, folder: str | os.PathLike, echo=print):
        self.path = Path(folder) / LOCK_NAME
        self.echo = echo
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        # A few tries: the holder may remove the file between our open() and our lock (it finished), and
        # then the file we locked is no longer the one in the folder.
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    owner = _read_owner(fd)
                    raise ConfigError(
                        f"{self.path.parent} is being trained by {_describe(owner)}: two trainings of one run "
                        f"would overwrite each other's checkpoints; wait for it to finish or stop it "
                        f"(lock file {self.path})")
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                owner = _read_owner(fd)
                if owner.get("pid") and owner.get("pid") != os.getpid():
                    self.echo(f"taking over the lock of {_describe(owner)}, which no longer runs "
                              f"(it left {self.path.name} behind)")
                me = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
                self.fd = fd
                return self
            except BaseException:
                if self.fd is None:
                    os.close(fd)
                raise
        raise ConfigError(f"cannot take the lock {self.path}: it keeps being replaced by another process")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            # Remove the file only while it is still ours (the inode we locked), then let the lock go.
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
