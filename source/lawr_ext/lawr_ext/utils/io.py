"""Crash-safe file writes (a killed process never leaves a half-written checkpoint, dataset or export) and the
hashes that say whether two configs or two models are the same."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

#: Bumped whenever the layout of checkpoints changes incompatibly (exports have deploy.EXPORT_FORMAT_VERSION).
FORMAT_VERSION = 5


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_HOST = socket.gethostname().replace(".", "_")  # temp names are split on dots


def _temp_prefix(path: Path) -> str:
    """Every temporary file of ``path`` is ``.<name>.<host>.<pid>.<random>.tmp`` (plus any suffix a writer adds)."""
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``path`` that writes killed before their rename left behind; returns them.

    A temporary file names the host and pid that writes it: only those of processes no longer running on
    this host go (on a shared filesystem another host's live write is left alone), and files of an older lawr
    without a host and pid in the name.
    """
    path = Path(path)
    prefix, removed = _temp_prefix(path), []
    if not path.parent.is_dir():
        return removed
    for temp in path.parent.glob(f"{glob.escape(prefix)}*.tmp*"):
        host, _, rest = temp.name[len(prefix):].partition(".")
        pid = rest.partition(".")[0]
        if host == _HOST and pid.isdigit() and _pid_alive(int(pid)):
            continue  # a write in flight: of this process, or of another one on this host
        if host != _HOST and pid.isdigit():
            continue  # another host's write, maybe in flight
        temp.unlink(missing_ok=True)
        removed.append(temp)
    return removed


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On an exception (or a kill) the old file, if any, is left untouched; the temporary files earlier kills left
    of the same target are removed first. The file gets the permissions of a plain ``open``: 0666 minus the
    umask (``mkstemp`` alone would make every checkpoint and export 0600, unreadable to a deploy user).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system that holds ``path`` (an existing file or folder)."""
    path = Path(path).resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


#: torch.save reports a failed write as a RuntimeError without its errno; with less than this free it was a full disk.
_FULL_DISK_BYTES = 1 << 20


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_path`; a full disk is an ``OSError`` (ENOSPC) in one line, the earlier
    file intact."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as file:  # closed here on a failure too: a full disk frees the partial file at once
                torch.save(obj, file)
        except RuntimeError:
            free = shutil.disk_usage(tmp.parent).free
            if free >= _FULL_DISK_BYTES:
                raise
            raise OSError(errno.ENOSPC, f"no space left on device {mount_point(tmp.parent)} ({free} bytes free); the "
                                        f"file there before is intact: free some space and rerun", str(path)) from None


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def config_hash(cfg: Any) -> str:
    """Short stable hash of a (dataclass) config, stored in checkpoints to detect mismatches."""
    data = asdict(cfg) if is_dataclass(cfg) else cfg
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def parameter_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes, raw bytes): equal iff bit-identical."""
    return state_fingerprint(module.state_dict())


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors of a state dict (names, dtypes, shapes, raw bytes): equal iff bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
