"""Learned element vectors (mat2vec: word embeddings of element names trained on 3 million materials-science
abstracts; Tshitoyan et al., Nature 571, 95 (2019)), the input layer of `models.attention`.

They come from the elementembeddings package's wheel on PyPI, downloaded once into the cache and checked
against its published SHA-256; we read one file out of it rather than depend on the package, which would pull
UMAP, openTSNE and seaborn into every install.
"""

from __future__ import annotations

import csv
import io
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Element

from tansaku import TansakuError
from tansaku.download import fetch

WHEEL = "elementembeddings-0.8.0-py3-none-any.whl"
WHEEL_URL = ("https://files.pythonhosted.org/packages/16/1e/1cbddfe353b3eb44561faddcdbd6024752c928486207e28dc81e2"
             "b1ca447/" + WHEEL)
WHEEL_SHA256 = "7c35940337b1eec6ad0f6ebd83c7adb4b912863aa96eebff102d4536324f0170"
MEMBER = "elementembeddings/data/element_representations/mat2vec.csv"
LAST_Z = 118


def read_mat2vec(wheel: Path) -> dict[str, np.ndarray]:
    """Element symbol → its 200-number vector, from the elementembeddings wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            text = archive.read(MEMBER).decode()
    except (zipfile.BadZipFile, KeyError) as exc:
        raise TansakuError(f"{wheel}: not the elementembeddings wheel holding {MEMBER} ({exc})") from exc
    rows = list(csv.reader(io.StringIO(text)))
    return {row[0]: np.array([float(v) for v in row[1:]]) for row in rows[1:] if row}


@lru_cache(maxsize=1)
def mat2vec_table() -> np.ndarray:
    """Vectors indexed by atomic number (row 0 and elements without a vector are zeros), each dimension
    standardized over the elements: zeros then mean "an average element" to the network."""
    vectors = read_mat2vec(fetch(WHEEL_URL, WHEEL, WHEEL_SHA256))
    known = {Element(symbol).Z: v for symbol, v in vectors.items() if Element.is_valid_symbol(symbol)}
    stacked = np.stack(list(known.values()))
    mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-8
    table = np.zeros((LAST_Z + 1, stacked.shape[1]))
    for z, vector in known.items():
        if z <= LAST_Z:
            table[z] = (vector - mean) / std
    return table
