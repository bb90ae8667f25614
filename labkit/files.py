"""Writing files the instructor must be able to trust: atomic, and private from the start."""

from __future__ import annotations

import os
from pathlib import Path

from labkit.errors import InputError


def write_private(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically, with ``mode`` from creation.

    The temporary file lives in the same directory so ``os.replace`` is a rename on one
    file system; it is created with its mode by ``os.open`` rather than chmod-ed
    afterwards, so passwords are never readable by others, not even for a moment. A
    crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = path.parent
    fd, tmp_name = _create_temp(directory, path.name, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(dir_fd)


def _create_temp(directory: Path, name: str, mode: int) -> tuple[int, str]:
    if not directory.is_dir():
        raise InputError("the folder does not exist", path=str(directory),
                         hint="create it first, or pass another --out")
    # The mode is part of the creation call (O_EXCL: never reuse someone else's file).
    for _ in range(100):
        tmp_name = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        return fd, tmp_name
    raise FileExistsError(f"could not create a temporary file in {directory}")
