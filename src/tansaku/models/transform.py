"""The target transform a model learns in: log10 for positive, heavy-tailed properties, the value itself else.

A model owns its transform (recorded in the saved model) and the predictor undoes it, so no caller ever writes
`10 **` again. The choice is the user's (`--transform`); `auto` takes log10 for the dielectric constants (as the
reference paper does) and for any positive property whose largest value is ten times its median or more
(refractive indices: median 2, up to 62), where trees on raw values spend their splits on the tail.
"""

from __future__ import annotations

import numpy as np

from tansaku import TansakuError

TRANSFORMS = ("auto", "log10", "none")
PAPER_LOG = ("eps_electronic", "eps_ionic", "eps_total")  # learned as log10 in Takahashi et al.
TAIL_RATIO = 10.0  # auto: log10 when max / median reaches this on a positive property


def choose(property_name: str, values: np.ndarray, requested: str = "auto") -> tuple[str, str]:
    """(transform, why) for a property and its training values."""
    if requested not in TRANSFORMS:
        raise TansakuError(f"--transform {requested!r}: choose from {', '.join(TRANSFORMS)}")
    values = np.asarray(values, dtype=float)
    if requested == "none":
        return "none", "as asked (--transform none)"
    if requested == "log10":
        if not (values > 0).any():
            raise TansakuError(f"--transform log10: no positive value of {property_name!r} to take the log of")
        return "log10", "as asked (--transform log10)"
    if property_name in PAPER_LOG:
        return "log10", "dielectric constants are learned as log10, as in Takahashi et al. (2020)"
    if len(values) and (values > 0).all():
        ratio = float(values.max() / np.median(values))
        if ratio >= TAIL_RATIO:
            return "log10", (f"positive values whose largest is {ratio:.0f}x the median: learned as log10 "
                             "(--transform none to learn the values themselves)")
    return "none", "values learned as they are (--transform log10 for a positive, heavy-tailed property)"


def usable(transform: str, values: np.ndarray) -> np.ndarray:
    """Which values the transform can take (log10: positive only; a few tiny ε_ion are left out, as in the paper)."""
    values = np.asarray(values, dtype=float)
    return values > 0 if transform == "log10" else np.isfinite(values)


def forward(transform: str, values) -> np.ndarray:
    """Property units → model units."""
    values = np.asarray(values, dtype=float)
    return np.log10(values) if transform == "log10" else values


def inverse(transform: str, mean, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model units → (value, low, high) in property units, low/high being mean ∓ one standard deviation."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    if transform == "log10":
        return 10**mean, 10 ** (mean - std), 10 ** (mean + std)
    return mean, mean - std, mean + std


def of_meta(meta: dict) -> str:
    """The transform a saved model learned in; models saved before `transform` existed say `log_target`."""
    return meta.get("transform") or ("log10" if meta.get("log_target") else "none")
