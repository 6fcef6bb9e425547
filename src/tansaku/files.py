"""Writing files so that a kill or an error midway leaves the previous file (or none), never half of one; and
tables of rows as CSV or JSON, the two formats every command's output comes in."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from tansaku import TansakuError

TABLE_FORMATS = ("csv", "json")


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


def unreadable(exc: OSError) -> str:
    """What is said of a file that exists but cannot be read (permissions, an I/O error), after its name."""
    return f"cannot be read ({exc.strerror or exc})"


def table_format(path: Path, given: str | None = None) -> str:
    """'csv' or 'json': as given (a --format option), else by the file's suffix."""
    fmt = (given or path.suffix.lstrip(".")).lower()
    if fmt not in TABLE_FORMATS:
        raise TansakuError(f"{path}: the format is chosen by the suffix (.csv or .json) or by --format"
                           if given is None else f"--format takes csv or json, not {given!r}")
    return fmt


def write_rows(rows: list[dict[str, Any]], handle: TextIO, fmt: str, keep_whole: tuple[str, ...] = ()) -> None:
    """Rows as a JSON list, or as a CSV table whose columns are every key met, in order: a nested dict's keys
    become columns 'outer.inner' (as pandas' json_normalize names them), a list is joined with '; ', and a
    column named in `keep_whole` (a structure dict, say) stays one JSON cell."""
    if fmt == "json":
        handle.write(json.dumps(rows, indent=1) + "\n")
        return
    flat = [_flat(row, keep_whole) for row in rows]
    columns = list(dict.fromkeys(key for row in flat for key in row)) or ["id"]
    writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)


def _flat(row: dict[str, Any], keep_whole: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in keep_whole:
            cells.update(_flat(value, keep_whole, f"{name}."))
        elif isinstance(value, dict):
            cells[name] = json.dumps(value)
        else:
            cells[name] = "; ".join(map(str, value)) if isinstance(value, list) else value
    return cells


def write_table(path: Path, rows: list[dict[str, Any]], fmt: str | None = None,
                keep_whole: tuple[str, ...] = ()) -> None:
    """Rows written to `path` as CSV or JSON (by `fmt` or the suffix; see write_rows), whole or not at all."""
    fmt = table_format(path, fmt)

    def write(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        write_rows(rows, text, fmt, keep_whole)
        text.flush()
        text.detach()  # the handle is write_atomically's to close

    write_atomically(path, write)
