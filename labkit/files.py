"""Writing files the instructor must be able to trust: atomic, and private from the start."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Write ``path`` atomically with ``mode`` from creation (never chmod after).

    A crash leaves either the old file or the new one, never half of one; the temporary
    file is created 0600 so a password is never readable by others, not even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
