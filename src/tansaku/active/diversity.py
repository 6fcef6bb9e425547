"""Choosing k candidates at once that are not near-copies of each other (local penalization).

After each pick, every remaining candidate's score is multiplied by 1 - exp(-d² / 2ℓ²), d being its distance
to the pick in a standardized, PCA-reduced descriptor space. A near-copy of a pick (d << ℓ) is thereby pushed
down the list; distant candidates keep their score. With k = 1 (or no coordinates) this is the plain ranking.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from tansaku import TansakuError


def descriptor_coordinates(X: np.ndarray, n_components: int = 16, seed: int = 0) -> np.ndarray:
    """Standardized descriptors projected on their leading principal components (distances for diversity)."""
    X = SimpleImputer(strategy="median", keep_empty_features=True).fit_transform(X)
    X = StandardScaler().fit_transform(X)
    n_components = min(n_components, X.shape[1], X.shape[0])
    return PCA(n_components=n_components, random_state=seed, svd_solver="randomized").fit_transform(X)


def typical_spacing(coords: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> float:
    """Median distance from a point to its nearest neighbour: the scale of 'near-copy' in this pool."""
    if len(coords) < 2:
        return 1.0
    idx = rng.choice(len(coords), size=min(sample, len(coords)), replace=False)
    part = coords[idx]
    d2 = ((part[:, None, :] - part[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    spacing = float(np.sqrt(np.median(d2.min(axis=1))))
    return spacing if spacing > 0 else 1.0


def ranking(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices from best to worst score, ties broken at random (not by position in the pool)."""
    scores = np.asarray(scores, dtype=float)
    if np.isnan(scores).any():
        raise TansakuError("acquisition scores contain NaN (a candidate with no usable descriptors?)")
    return np.lexsort((rng.random(len(scores)), -scores))


def select_batch(scores: np.ndarray, k: int, rng: np.random.Generator, coords: np.ndarray | None = None,
                 length_scale: float = 0.0, shortlist: int = 5000) -> np.ndarray:
    """Indices of k candidates: the best scores, spread apart when coordinates and a length scale are given."""
    order = ranking(scores, rng)
    k = min(k, len(order))
    if k <= 1 or coords is None or length_scale <= 0:
        return order[:k]
    top = order[: max(shortlist, 5 * k)]
    s = np.asarray(scores, float)[top]
    s = s - s.min() + 1e-9 * (np.ptp(s) + 1e-12)  # positive, same order: penalties multiply
    s = s + 1e-12 * rng.random(len(s))  # random tie-break among equal scores
    c = coords[top]
    chosen: list[int] = []
    for _ in range(k):
        i = int(np.argmax(s))
        chosen.append(i)
        d2 = ((c - c[i]) ** 2).sum(axis=1)
        s = s * -np.expm1(-d2 / (2.0 * length_scale**2))
        s[i] = -np.inf
    return top[np.array(chosen)]


def pool_strata(X: np.ndarray, n_strata: int, seed: int = 0) -> np.ndarray:
    """Cluster labels of the candidates (k-means on reduced descriptors): regions of descriptor space."""
    from sklearn.cluster import MiniBatchKMeans

    coords = descriptor_coordinates(X, seed=seed)
    n_strata = max(1, min(n_strata, len(X)))
    kmeans = MiniBatchKMeans(n_clusters=n_strata, random_state=seed, n_init=3, batch_size=4096)
    return kmeans.fit_predict(coords)


def stratified_batch(std: np.ndarray, strata: np.ndarray, labelled_per_stratum: np.ndarray, k: int,
                     rng: np.random.Generator, sigma: np.ndarray | None = None) -> np.ndarray:
    """k candidates allocated to regions in proportion to size x mean uncertainty (Neyman allocation).

    `std` and `strata` describe the unlabelled candidates; `labelled_per_stratum` counts what each region
    already has. Random sampling allocates by region size alone and uncertainty sampling spends everything
    on the few most uncertain (often outlying) candidates; Neyman's rule n_h ∝ N_h σ_h, which minimizes the
    variance of a stratified estimate, sits between the two. Within a region the pick is random, so the
    chosen materials stay representative of it. `sigma` (one per region) replaces the mean uncertainty, e.g.
    by `stratum_errors`.
    """
    n_strata = len(labelled_per_stratum)
    unlabelled = np.bincount(strata, minlength=n_strata)
    size = unlabelled + labelled_per_stratum
    if sigma is None:
        sigma = np.bincount(strata, weights=std, minlength=n_strata) / np.maximum(unlabelled, 1)
    weight = size * sigma
    if weight.sum() <= 0:
        weight = size.astype(float)
    have = labelled_per_stratum.astype(float).copy()
    total = have.sum() + min(k, len(std))
    desired = total * weight / weight.sum()
    left = unlabelled.copy()
    members = {h: list(rng.permutation(np.flatnonzero(strata == h))) for h in np.flatnonzero(unlabelled)}
    chosen: list[int] = []
    for _ in range(min(k, len(std))):
        deficit = np.where(left > 0, desired - have, -np.inf)
        h = int(np.argmax(deficit + 1e-9 * rng.random(n_strata)))
        chosen.append(int(members[h].pop()))
        have[h] += 1
        left[h] -= 1
    return np.array(chosen, dtype=int)


def stratum_errors(std: np.ndarray, strata: np.ndarray, residuals: np.ndarray, labelled_strata: np.ndarray,
                   n_strata: int, prior: float = 3.0) -> np.ndarray:
    """Per region, the model's error as measured: RMS of out-of-bag residuals of its labelled materials.

    Tree spread says where the trees disagree, which is not where they are wrong (a forest can agree on a wrong
    answer for an unusual chemistry). Residuals measure the error itself; a region with few labels leans on its
    mean tree spread, weighted as `prior` pseudo-residuals, so an unexplored region is not ignored.
    """
    unlabelled = np.bincount(strata, minlength=n_strata)
    spread2 = np.bincount(strata, weights=std**2, minlength=n_strata) / np.maximum(unlabelled, 1)
    known = np.isfinite(residuals)  # a row every tree saw has no out-of-bag prediction
    residuals, labelled_strata = residuals[known], labelled_strata[known]
    count = np.bincount(labelled_strata, minlength=n_strata)
    squares = np.bincount(labelled_strata, weights=residuals**2, minlength=n_strata)
    return np.sqrt((squares + prior * spread2) / (count + prior))


def duplicate_groups(X: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Group id per row: rows with the same descriptors (e.g. polymorphs, by composition) share one."""
    key = np.round(np.nan_to_num(np.asarray(X, float), nan=-1e300), decimals)
    return np.unique(key, axis=0, return_inverse=True)[1].ravel()


def density_batch(std: np.ndarray, groups: np.ndarray, group_size: np.ndarray, k: int,
                  rng: np.random.Generator) -> np.ndarray:
    """k candidates drawn with probability ∝ σ × (pool materials sharing their descriptors), one per group.

    Labelling one member of a group of identical descriptors teaches the model about all of them, so its
    value for the error over the pool scales with the group's size; an isolated outlier (size 1) with a
    large σ matters for one material only. Drawing (Gumbel top-k) instead of ranking keeps the batch
    representative rather than greedy.
    """
    weight = np.maximum(std, 1e-12) * group_size[groups]
    order = np.argsort(-(np.log(weight) + rng.gumbel(size=len(weight))))
    _, first = np.unique(groups[order], return_index=True)  # best-placed member of each group
    keep = np.sort(first)[: min(k, len(order))]
    return order[keep]
