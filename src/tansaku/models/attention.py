"""An element-attention network on compositions, and the blend that averages it with lgbm-lin (`lgbm-attn`).

Each element of a composition is a token: its fixed mat2vec vector (`features.element_vectors`) projected to
the network's width, plus an encoding of its atom fraction. Three transformer layers let every element see the
others (Ti next to Ba is not Ti next to Mg), and fraction-weighted mean and max pooling give the compound.

Dielectric data sets are small (about 1,000 oxides), so the network learns chemistry first from a large
property (`pretrain`, e.g. 132,752 formation energies) and then refits every weight on the target. Its errors
differ from those of the trees and the ridge, which is why the average beats both (issue 3 figures in
benchmarks/results/ml_dielectric.md). Needs PyTorch (`pip install 'tansaku[mlip]'`).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from torch import nn

from tansaku import TansakuError
from tansaku.features import tokens
from tansaku.files import write_atomically

PRETRAINED_FORMAT = "tansaku-pretrained-attention-1"
MIN_PRETRAINING = 100


class ElementAttention(nn.Module):
    def __init__(self, vectors: torch.Tensor, width: int = 64, layers: int = 3, heads: int = 4):
        super().__init__()
        self.vectors = nn.Embedding.from_pretrained(vectors.float(), freeze=True)
        self.project = nn.Linear(vectors.shape[1], width)
        self.fraction = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(2 * width, 64), nn.SiLU(), nn.Linear(64, 1))

    def encode(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The compound's vector, before the head: fraction-weighted mean and max of the encoded elements."""
        pad = z == 0
        fraction = torch.stack([x, torch.log(x.clamp_min(1e-4))], -1)
        h = self.encoder(self.project(self.vectors(z)) + self.fraction(fraction), src_key_padding_mask=pad)
        mean = (h * x.unsqueeze(-1)).sum(1)
        top = h.masked_fill(pad.unsqueeze(-1), -1e9).max(1).values
        return torch.cat([mean, top], -1)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(z, x)).squeeze(-1)


def _fit(net: ElementAttention, z: np.ndarray, x: np.ndarray, target: np.ndarray, epochs: int, lr: float,
         batch: int, seed: int, progress: Callable | None = None) -> ElementAttention:
    """L1 loss, AdamW with a one-cycle schedule: robust to the few outliers of dielectric data."""
    torch.manual_seed(seed)
    zt, xt = torch.as_tensor(z), torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(target, dtype=torch.float32)
    steps = int(np.ceil(len(z) / batch))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps)
    rng = np.random.default_rng(seed)
    net.train()
    epochs_iter = progress(range(epochs)) if progress else range(epochs)
    for _ in epochs_iter:
        order = torch.as_tensor(rng.permutation(len(z)))
        for start in range(0, len(z), batch):
            idx = order[start : start + batch]
            loss = nn.functional.l1_loss(net(zt[idx], xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    net.eval()
    return net


def _predict(net: ElementAttention, z: np.ndarray, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.as_tensor(z), torch.as_tensor(x, dtype=torch.float32)).numpy().astype(float)


def _checked_tokens(X) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2 * tokens.SLOTS:
        raise TansakuError(f"the attention network reads the {2 * tokens.SLOTS} element-token columns; got "
                           f"{X.shape[-1]}")
    return tokens.split_tokens(X)


def pretrain(formulas: list[str], values: np.ndarray, property_name: str, epochs: int = 12, seed: int = 0,
             progress: Callable | None = None) -> dict:
    """Weights learned on a large property, to start `AttentionRegressor` from: the returned dict is what
    `save_pretrained` writes and `AttentionRegressor(pretrained=...)` takes. Compositions the tokens cannot hold
    are left out and counted."""
    from tansaku.features.element_vectors import WHEEL_SHA256, mat2vec_table

    kept, rows = [], []
    for i, formula in enumerate(formulas):
        try:
            rows.append(tokens.element_tokens([formula])[0])
            kept.append(i)
        except TansakuError:
            continue  # more elements than token slots, or not a composition: a handful in 100,000
    if len(kept) < MIN_PRETRAINING:
        raise TansakuError(f"{len(kept)} usable values of {property_name!r}; pretraining needs a large property "
                           f"(at least {MIN_PRETRAINING}, ideally tens of thousands): import one first, e.g. "
                           "formation energies")
    z, x = tokens.split_tokens(np.array(rows))
    values = np.asarray(values, dtype=float)[kept]
    mean, std = float(values.mean()), float(values.std()) or 1.0
    start = time.perf_counter()
    net = _fit(ElementAttention(torch.as_tensor(mat2vec_table())), z, x, (values - mean) / std, epochs, 2e-3, 256,
               seed, progress)
    meta = {"property": property_name, "n": len(kept), "left_out": len(formulas) - len(kept), "epochs": epochs,
            "seed": seed,
            "seconds": round(time.perf_counter() - start, 1), "element_vectors": f"mat2vec ({WHEEL_SHA256[:12]})",
            "target_mean": mean, "target_std": std}
    return {"format": PRETRAINED_FORMAT, "state": net.state_dict(), "meta": meta}


def save_pretrained(path: Path, pretrained: dict) -> None:
    write_atomically(path, lambda handle: torch.save(pretrained, handle))


def load_pretrained(path: Path) -> dict:
    """A file written by `tansaku pretrain`, with the digest of its bytes added to its metadata (what a trained
    model records of where its network started)."""
    try:
        raw = path.read_bytes()
        data = torch.load(io.BytesIO(raw), weights_only=True)
    except FileNotFoundError as exc:
        raise TansakuError(f"{path}: no such pretrained-weights file") from exc
    except Exception as exc:  # noqa: BLE001
        raise TansakuError(f"{path}: not a pretrained-weights file written by 'tansaku pretrain' "
                           f"({type(exc).__name__})") from exc
    if not isinstance(data, dict) or data.get("format") != PRETRAINED_FORMAT:
        raise TansakuError(f"{path}: not a pretrained-weights file written by 'tansaku pretrain'")
    data["meta"] = {**data["meta"], "file": str(path), "sha256": hashlib.sha256(raw).hexdigest()}
    return data


class AttentionRegressor(RegressorMixin, BaseEstimator):
    """Several networks (different seeds) on the element-token columns; their spread is the uncertainty.

    `pretrained`: the dict of `pretrain`/`load_pretrained`; its weights start every network and the fitted
    model keeps it, so a saved model needs no other file. Without it the network learns from scratch (on
    about 1,000 oxides about 0.015 lower R² on ε∞).
    """

    def __init__(self, pretrained: dict | None = None, seeds: int = 3, epochs: int = 150, batch_size: int = 64,
                 learning_rate: float | None = None, random_state: int = 0):
        self.pretrained = pretrained
        self.seeds = seeds
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _network(self) -> ElementAttention:
        if self.pretrained is not None:
            net = ElementAttention(self.pretrained["state"]["vectors.weight"])
            net.load_state_dict(self.pretrained["state"])
            return net
        from tansaku.features.element_vectors import mat2vec_table

        return ElementAttention(torch.as_tensor(mat2vec_table()))

    def fit(self, X, y):
        z, x = _checked_tokens(X)
        y = np.asarray(y, dtype=float)
        self.mean_, self.std_ = float(y.mean()), float(y.std()) or 1.0
        lr = self.learning_rate or (1e-3 if self.pretrained is not None else 2e-3)
        self.states_ = []
        for i in range(self.seeds):
            net = _fit(self._network(), z, x, (y - self.mean_) / self.std_, self.epochs, lr, self.batch_size,
                       self.random_state * 100 + i)
            self.states_.append(net.state_dict())
        self.pretrained_meta_ = None if self.pretrained is None else self.pretrained["meta"]
        return self

    def predict_samples(self, X) -> np.ndarray:
        """Each network's prediction (seeds × rows)."""
        z, x = _checked_tokens(X)
        net = ElementAttention(self.states_[0]["vectors.weight"])
        out = []
        for state in self.states_:
            net.load_state_dict(state)
            net.eval()
            out.append(_predict(net, z, x) * self.std_ + self.mean_)
        return np.stack(out)

    def predict_dist(self, X):
        samples = self.predict_samples(X)
        return samples.mean(axis=0), samples.std(axis=0)

    def predict(self, X):
        return self.predict_dist(X)[0]


class TokenBlend(RegressorMixin, BaseEstimator):
    """`base` on every column but the last `token_columns`, the network on those alone; the mean is the
    weighted average of the two. The spread is the base's calibrated one: the network's seeds agree far more
    than its errors warrant, and the blend errs less than the base, so its interval stays on the safe side.
    Importances are the base's (the token columns get none: the network's share is not broken down)."""

    def __init__(self, base=None, network=None, weight: float = 0.5, token_columns: int = 2 * tokens.SLOTS):
        self.base = base
        self.network = network
        self.weight = weight
        self.token_columns = token_columns

    def fit(self, X, y):
        X = np.asarray(X)
        self.base_ = clone(self.base).fit(X[:, : -self.token_columns], y)
        self.network_ = clone(self.network).fit(X[:, -self.token_columns :], y)
        self.feature_importances_ = np.concatenate([self.base_.feature_importances_, np.zeros(self.token_columns)])
        return self

    def predict_dist(self, X):
        X = np.asarray(X)
        mean, std = self.base_.predict_dist(X[:, : -self.token_columns])
        net = self.network_.predict(X[:, -self.token_columns :])
        return (1 - self.weight) * mean + self.weight * net, std

    def predict(self, X):
        return self.predict_dist(X)[0]
