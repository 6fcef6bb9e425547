import hashlib
import io
import tarfile

import pytest

from tansaku import TansakuError
from tansaku.dft.pseudo_fetch import fetch_family
from tests.conftest import PSEUDOS, need_shared


def make_tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_family_is_downloaded_checked_unpacked_and_cached(http_server, tmp_path, monkeypatch):
    need_shared(PSEUDOS)
    monkeypatch.setenv("TANSAKU_CACHE", str(tmp_path / "cache"))
    root, base = http_server
    payload = make_tgz({"nc-sr-04_pbe_standard/Mg-sp.upf": (PSEUDOS / "Mg-sp.upf").read_bytes(),
                        "nc-sr-04_pbe_standard/O.upf": (PSEUDOS / "O.upf").read_bytes()})
    (root / "dojo.tgz").write_bytes(payload)
    with pytest.raises(TansakuError, match="checksum mismatch"):
        fetch_family("pseudodojo-nc-pbe", f"{base}/dojo.tgz", "0" * 64)
    family = fetch_family("pseudodojo-nc-pbe", f"{base}/dojo.tgz", hashlib.sha256(payload).hexdigest())
    assert family.files == {"Mg": "Mg-sp.upf", "O": "O.upf"}
    assert (family.directory / "standard.json").exists() and family.valence("Mg") == 10
    (root / "dojo.tgz").unlink()  # the second call is served from the cache
    assert fetch_family("pseudodojo-nc-pbe", f"{base}/dojo.tgz").directory == family.directory


def test_unknown_family_and_archive_without_upf(http_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TANSAKU_CACHE", str(tmp_path / "cache"))
    with pytest.raises(TansakuError, match="unknown pseudopotential family 'nope'"):
        fetch_family("nope")
    root, base = http_server
    (root / "empty.tgz").write_bytes(make_tgz({"readme.txt": b"hello"}))
    with pytest.raises(TansakuError, match="holds no UPF files"):
        fetch_family("custom", f"{base}/empty.tgz")
