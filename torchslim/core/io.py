"""Writing files so that nothing is lost: a temp file in the same folder,
flushed and fsynced, then renamed over the target (a reader sees the old
file or the new one, never half of one); a failed write leaves no temp file."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{path}: a parent is a file; choose an output path inside a folder") from None
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
