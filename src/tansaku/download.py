"""Downloading official data once into a cache, verified by SHA-256."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from tansaku import TansakuError
from tansaku.files import write_atomically


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
    digest = hashlib.sha256()

    def download(handle) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user-given URL
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    handle.write(block)
        except Exception as exc:  # noqa: BLE001
            raise TansakuError(f"{url}: download failed ({exc})") from exc
        if sha256 and digest.hexdigest() != sha256:
            raise TansakuError(f"{url}: checksum mismatch (expected sha256 {sha256}, got {digest.hexdigest()}); "
                               "nothing was cached")

    write_atomically(target, download)  # a failed or mismatched download leaves no file behind
    recorded.write_text(digest.hexdigest() + "\n")
    return target
