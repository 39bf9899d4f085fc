"""One process at a time per run directory or dataset directory: an exclusive lock that names its holder.

Two trainings on one ``run_dir`` (or two collectors on one dataset) would write the same checkpoints, summaries
and shards; the second one is refused in one line instead, naming the pid (and host) that holds the lock. The
lock is ``flock`` on a ``.lock`` file in the directory: the kernel releases it when its holder exits, however it
exits (kill -9 included), so a lock is never stale. The file stays; only its content (the holder) changes.
"""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lawr_ext.utils.cli import OneLineError

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth (a held lock may be taken again)


class LockedError(OneLineError):
    """The directory is in use by another process: one line naming it and the holder."""


@contextmanager
def directory_lock(directory: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``directory``'s lock (creating the directory) while the block runs; ``what`` says who takes it
    ("training", "collection"). Raises ``LockedError`` at once if another process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / LOCK_NAME).resolve()
    if path in _held:  # this process holds it already (e.g. a collection inside a training of the same run)
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise LockedError(f"{directory} is in use by {holder}; wait for it to finish or use another "
                              "directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
    finally:
        os.close(fd)  # releases the flock
