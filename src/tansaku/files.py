"""Writing files so that a kill or an error midway leaves the previous file (or none), never half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename it over `path` (atomic on one file
    system). If `write` raises, the temporary file is removed and `path` is untouched. The temporary file is
    created like `open` creates files (0666 less the umask), not owner-only like `tempfile`'s: a model, weights
    or cache file is meant to be read by the group that shares a cluster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
