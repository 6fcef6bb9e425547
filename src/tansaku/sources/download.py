"""Downloading official data once into a cache, verified by SHA-256."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from tansaku import TansakuError


def cache_dir() -> Path:
    """$TANSAKU_CACHE, else $XDG_CACHE_HOME/tansaku, else ~/.cache/tansaku."""
    if env := os.environ.get("TANSAKU_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tansaku"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, filename: str, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """The cached copy of url, downloaded if absent or corrupt.

    With `sha256`, the file must match it. Without one (an archive that upstream may rebuild), the digest
    of the first download is recorded beside the file and every later use is checked against it.
    """
    target = cache_dir() / filename
    recorded = target.with_name(target.name + ".sha256")
    expected = sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    if target.exists() and expected and sha256_of(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user-given URL
                shutil.copyfileobj(response, tmp)
        except Exception as exc:  # noqa: BLE001
            Path(tmp.name).unlink(missing_ok=True)
            raise TansakuError(f"{url}: download failed ({exc})") from exc
    got = sha256_of(Path(tmp.name))
    if sha256 and got != sha256:
        Path(tmp.name).unlink(missing_ok=True)
        raise TansakuError(f"{url}: checksum mismatch (expected sha256 {sha256}, got {got}); nothing was cached")
    os.replace(tmp.name, target)
    recorded.write_text(got + "\n")
    return target
