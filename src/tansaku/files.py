"""Writing files so that a kill or an error midway leaves the previous file (or none), never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename it over `path` (atomic on one file
    system). If `write` raises, the temporary file is removed and `path` is untouched. The file gets the
    permissions `open` would give it (the umask's), not the owner-only ones of a temporary file: a model or
    weights file is meant to be read by the group that shares a cluster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False) as tmp:
        try:
            write(tmp)
        except BaseException:
            tmp.close()
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.chmod(tmp.name, 0o666 & ~_umask())
    os.replace(tmp.name, path)


def _umask() -> int:
    """Read without changing it where Linux allows: setting it, the portable way to read it, briefly gives every
    other thread's new files no mask at all."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o077)  # elsewhere: set a strict one while reading, then put it back
    os.umask(current)
    return current
