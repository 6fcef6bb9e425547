"""Figures people look at rather than read: parity with error bars, feature importances, curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def parity(y, mean, std, path: Path, label: str, r2: float | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.errorbar(y, mean, yerr=std, fmt="o", ms=3, alpha=0.5, elinewidth=0.5)
    lo, hi = float(min(y.min(), mean.min())), float(max(y.max(), mean.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    if r2 is not None:
        ax.set_title(f"R² = {r2:.3f} (out of fold)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def importance(names, values, path: Path, title: str, top: int = 20) -> Path:
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(order) + 1))
    ax.barh(np.array(names)[order], np.asarray(values)[order])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curves(series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path, xlabel: str, ylabel: str,
           title: str = "") -> Path:
    """Each series: x, median, (lower, upper) band as a 2×n array."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, median, band) in series.items():
        ax.plot(x, median, label=name)
        ax.fill_between(x, band[0], band[1], alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
