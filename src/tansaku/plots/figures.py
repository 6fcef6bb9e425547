"""Figures people look at rather than read: parity with error bars, feature importances, curves."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _save(fig, out: Path | BinaryIO) -> None:
    """A PNG (or whatever the suffix says) at a path, or SVG into an open binary file (the web pages)."""
    if isinstance(out, Path | str):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    else:
        fig.savefig(out, format="svg")
    plt.close(fig)


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
    _save(fig, path)
    return path


def importance(names, values, path: Path, title: str, top: int = 20) -> Path:
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(order) + 1))
    ax.barh(np.array(names)[order], np.asarray(values)[order])
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
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
    _save(fig, path)
    return path


def active_learning_curves(result: dict, path: Path, label: str) -> None:
    """Learning curves (test MAE) and, for goals with targets, discovery curves: median and 10-90 % band."""
    has_targets = result["goal"]["kind"] != "error"
    fig, axes = plt.subplots(1, 2 if has_targets else 1, figsize=(11 if has_targets else 5.5, 4.2), squeeze=False)
    # with no test set (--test-fraction 0) the error is measured on the pool not yet labelled
    where = "test" if result.get("n_test") else "unlabelled-pool"
    panels = [("mae", f"{where} MAE ({label})")] + ([("found", "targets found")] if has_targets else [])
    for ax, (key, ylabel) in zip(axes[0], panels, strict=True):
        for name, runs in result["strategies"].items():
            length = min(len(r["evaluated"]) for r in runs)
            x = np.array(runs[0]["evaluated"][:length])
            values = np.array([r[key][:length] for r in runs], dtype=float)
            line, = ax.plot(x, np.median(values, axis=0), label=name)
            if len(runs) > 1:
                ax.fill_between(x, np.percentile(values, 10, axis=0), np.percentile(values, 90, axis=0),
                                color=line.get_color(), alpha=0.15)
        if key == "found" and result.get("n_targets"):
            ax.axhline(result["n_targets"] / 2, color="grey", lw=0.8, ls="--", label="half of the targets")
        ax.set_xlabel("labelled materials (evaluations)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['n_pool']} in pool, {result['seeds']} seeds", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _hits_against_cost(ax, picks: list[dict], levels: dict) -> None:
    """Hits against cumulative CPU hours, with each pick marked where it was paid for, by level."""
    hours = np.cumsum([p["cpu_hours"] or 0.0 for p in picks])
    ax.step(np.concatenate([[0], hours]), np.concatenate([[0], np.cumsum([p["hit"] for p in picks])]),
            where="post", color="C0", label="found")
    for level, colour, marker, name in (("cheap", "C2", "|", levels["cheap"]),
                                        ("expensive", "C3", "v", levels["property"])):
        at = [h for h, p in zip(hours, picks, strict=True) if p.get("level") == level]
        spent = sum(p["cpu_hours"] or 0.0 for p in picks if p.get("level") == level)
        if at:
            ax.scatter(at, np.zeros(len(at)), marker=marker, s=60, color=colour, clip_on=False,
                       label=f"{level}: {name} ({len(at)} runs, {spent:.2g} CPU-h)")
    ax.set_xlabel("CPU hours, cumulative")
    ax.set_ylabel("materials found")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper left")


def campaign_progress(status: dict, path: Path) -> Path:
    """Left: materials found (or best value) against runs. Middle: the model's cross-validated error, round by
    round. Right: what the model predicted for each pick against what the oracle gave (its honesty)."""
    picks = [p for r in status["rounds"] for p in r["picks"]]
    runs = np.arange(0, len(picks) + 1)
    dataset = status.get("oracle") == "dataset"
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))
    goal = status["goal"]
    if goal["kind"] == "range" or any(p["hit"] for p in picks):
        left.step(runs, np.concatenate([[0], np.cumsum([p["hit"] for p in picks])]), where="post", color="C0")
        left.set_ylabel("materials meeting every goal" if status.get("goals") else "materials found"
                        + (f" in [{goal['lo']}, {goal['hi']}]" if goal["kind"] == "range" else ""))
        left.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        values = np.array([np.nan if p["value"] is None else p["value"] for p in picks], dtype=float)
        sign = -1 if goal["kind"] == "minimize" else 1
        best = sign * np.fmax.accumulate(np.where(np.isnan(values), -np.inf, sign * values))
        left.step(runs[1:], best, where="post")
        left.set_ylabel(f"best {status['property']} so far")
    colours = {"done": "C2", "metal": "C1", "failed": "C3", "pending": "0.6"}
    for name, colour in colours.items():
        idx = [i + 1 for i, p in enumerate(picks) if p["status"] == name]
        if idx:
            left.scatter(idx, np.zeros(len(idx)), marker="|", s=80, color=colour, label=name)
    left.set_xlabel("look-ups of stored values (a simulation)" if dataset else "DFT runs (campaign picks)")
    left.set_xlim(0, max(len(picks), 1) + 0.5)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=8, loc="upper left")
    judged = [p for p in picks if p["predicted"] is not None and p["value"] is not None]
    goals = [_parse_goal(text) for text in status.get("goals") or []]
    if len(goals) >= 2:  # several goals: the picks where they landed on the first two goals' axes
        _picks_on_goals(right, picks, goals[:2], status["rounds"])
    elif judged:
        pred = np.array([p["predicted"] for p in judged])
        lo = np.array([p["predicted_low"] for p in judged])
        hi = np.array([p["predicted_high"] for p in judged])
        got = np.array([p["value"] for p in judged])
        right.errorbar(got, pred, yerr=[pred - lo, hi - pred], fmt="o", ms=4, capsize=2)
        for p, x, y in zip(judged if len(judged) <= 15 else [], got, pred, strict=False):
            right.annotate(p["formula"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        edge = [min(got.min(), lo.min()), max(got.max(), hi.max())]
        right.plot(edge, edge, "k--", lw=1)
        if goal["kind"] == "range":
            right.axvspan(goal["lo"], goal["hi"], color="C0", alpha=0.1)
    errors = [(r["number"], r["model"]["cv_mae"]) for r in status["rounds"] if "cv_mae" in r["model"]]
    if status.get("levels"):  # two levels: what each level cost, and the hits it bought
        _hits_against_cost(middle, picks, status["levels"])
    elif errors:
        middle.plot(*zip(*errors, strict=True), "o-")
        transform = next((r["model"].get("transform") for r in status["rounds"] if r["model"]), "none")
        middle.set_ylabel("cross-validated MAE" + (" (log10)" if transform == "log10" else ""))
    else:
        middle.text(0.5, 0.5, "no cross-validated model yet\n(cv_folds = 0, or random picks only)",
                    ha="center", va="center", transform=middle.transAxes, fontsize=9)
    if not status.get("levels"):
        middle.set_xlabel("round")
        if errors and len(errors) <= 12:
            middle.set_xticks([number for number, _ in errors])
        else:
            middle.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(goals) < 2:
        right.set_xlabel(("stored " if dataset else "computed ") + status["property"])
        right.set_ylabel("predicted before the run (±1σ)")
    fig.suptitle(f"campaign {status['name']}: {status['hits']} found in {status['runs']} runs")
    fig.tight_layout()
    _save(fig, path)
    return path


def _parse_goal(text: str):
    from tansaku.active.multigoal import Condition

    return Condition.parse(text)


def _picks_on_goals(ax, picks: list[dict], goals: list, rounds: list[dict]) -> None:
    """Each pick at its values of two goal properties, coloured by round, hits ringed, the goal region shaded."""
    (gx, gy) = goals
    placed = [p for p in picks if p.get("values") and gx.prop in p["values"] and gy.prop in p["values"]]
    if not placed:
        ax.text(0.5, 0.5, "no pick has both values yet", ha="center", va="center", transform=ax.transAxes)
        return
    number = {p["material_id"]: r["number"] for r in rounds for p in r["picks"]}
    x = np.array([p["values"][gx.prop] for p in placed], float)
    y = np.array([p["values"][gy.prop] for p in placed], float)
    shown = ax.scatter(x, y, c=[number[p["material_id"]] for p in placed], cmap="viridis", s=18, zorder=3)
    hits = np.array([p["hit"] for p in placed])
    ax.scatter(x[hits], y[hits], s=70, facecolors="none", edgecolors="C3", zorder=4, label="meets every goal")
    xlo, xhi = ax.get_xlim()
    ylo, yhi = ax.get_ylim()
    ax.axvspan(gx.lo if gx.lo is not None else xlo, gx.hi if gx.hi is not None else xhi, color="C0", alpha=0.06)
    ax.axhspan(gy.lo if gy.lo is not None else ylo, gy.hi if gy.hi is not None else yhi, color="C0", alpha=0.06)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    ax.set_xlabel(f"{gx.prop} (goal {gx})")
    ax.set_ylabel(f"{gy.prop} (goal {gy})")
    ax.legend(fontsize=8, loc="best")
    ax.figure.colorbar(shown, ax=ax, label="round", ticks=sorted({number[p["material_id"]] for p in placed}))


def structure_picture(structure, out: Path | BinaryIO, title: str = "") -> None:
    """The conventional cell's atoms in perspective with the cell's edges, coloured by element: a glance at the
    structure, not a viewer."""
    from itertools import product

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with suppress(Exception):  # spglib fails on some odd cells: the stored one is drawn then
        structure = SpacegroupAnalyzer(structure, symprec=0.1).get_conventional_standard_structure()
    fig = plt.figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot(projection="3d")
    matrix = structure.lattice.matrix
    corners = {c: np.dot(c, matrix) for c in product((0, 1), repeat=3)}
    for a, b in product(corners, repeat=2):
        if sum(abs(x - y) for x, y in zip(a, b, strict=True)) == 1 and a < b:
            ax.plot(*zip(corners[a], corners[b], strict=True), color="0.6", lw=0.8)
    symbols = sorted({site.specie.symbol for site in structure})
    for i, symbol in enumerate(symbols):
        sites = [site for site in structure if site.specie.symbol == symbol]
        radius = float(getattr(sites[0].specie, "atomic_radius", None) or 1.0)
        xyz = np.array([site.coords for site in sites])
        ax.scatter(*xyz.T, s=120 * radius**2, color=f"C{i % 10}", edgecolor="k", depthshade=False, label=symbol)
    ax.view_init(elev=18, azim=-60)
    ax.set_axis_off()
    ax.set_box_aspect(np.ptp(np.array(list(corners.values())), axis=0))
    ax.legend(loc="upper left", fontsize=8, markerscale=0.4, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def campaign_cost(status: dict, out: Path | BinaryIO) -> None:
    """Materials found against the CPU hours the campaign's calculations took, pick by pick: what the search
    cost, as opposed to how many runs it made."""
    picks = [p for r in status["rounds"] for p in r["picks"]]
    hours = np.concatenate([[0.0], np.cumsum([p["cpu_hours"] or 0.0 for p in picks])])
    hits = np.concatenate([[0], np.cumsum([p["hit"] for p in picks])])
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    ax.step(hours, hits, where="post")
    ax.set_xlabel("CPU hours spent")
    ax.set_ylabel("materials found")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # small totals otherwise print as run-together labels
    ax.set_title(f"{status['hits']} found for {status['cpu_hours']:.2f} CPU hours", fontsize=10)
    fig.tight_layout()
    _save(fig, out)


def band_structure(bands: dict, edges: dict, out: Path | BinaryIO, title: str = "", window_ev: float = 6.0) -> None:
    """Bands along the path, energies from the valence-band maximum, the high-symmetry points as ticks and the
    edges and gap marked. `bands` is the band step's outputs, `edges` the electronic analysis's."""
    from tansaku.dft.band_path import BandPath

    distance = np.asarray(bands["distance"])
    energies = np.asarray(bands["eigenvalues_ev"]) - edges["vbm"]
    path = BandPath(np.asarray(bands["k_frac"]), distance, list(bands["labels"]))
    # spin-polarized: each channel's bands, spin up solid and spin down dashed, each filled to its own count
    channels = edges.get("spin_channels") or [{"name": "", "first": 0, "count": energies.shape[1],
                                               "occupied": int(round(bands["nelec"])) // 2}]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    jumps = [i + 1 for i, (a, b) in enumerate(zip(path.labels[:-1], path.labels[1:], strict=True))
             if a and b and a != b]
    for channel in channels:
        style = "--" if channel["name"] == "down" else "-"
        for start, stop in zip([0, *jumps], [*jumps, len(distance)], strict=True):  # no line across a jump
            for band in range(channel["count"]):
                ax.plot(distance[start:stop], energies[start:stop, channel["first"] + band], style,
                        color="C0" if band < channel["occupied"] else "C3", lw=1.0)
    if len(channels) > 1:
        ax.plot([], [], "-", color="0.3", lw=1.0, label="spin up")
        ax.plot([], [], "--", color="0.3", lw=1.0, label="spin down")
        ax.legend(fontsize=7, loc="lower left")
    positions, names = path.ticks()
    for x in positions:
        ax.axvline(x, color="0.8", lw=0.6)
    ax.set_xticks(positions, names)
    gap = edges["cbm"] - edges["vbm"]
    ax.axhspan(0, gap, color="0.93", zorder=0)
    kind = "direct" if edges.get("is_direct") else "indirect"
    ax.text(0.99, 0.5 * gap, f"{kind} gap {gap:.2f} eV\nVBM {edges['vbm_at']}, CBM {edges['cbm_at']}",
            transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
    ax.set_xlim(distance[0], distance[-1])
    ax.set_ylim(-window_ev, gap + window_ev)
    ax.set_ylabel("energy − VBM (eV)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def absorption_spectrum(optics: dict, out: Path | BinaryIO, title: str = "") -> None:
    """α(E) on a log scale: the PBEsol spectrum and the one scissor-shifted to a hybrid gap, the threshold that
    defines the onset, and each onset marked. `optics` is the electronic analysis's optics outputs."""
    energy = np.asarray(optics["energy_ev"])
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    curves_ = [("alpha_cm", "onset_ev", "PBEsol", "C0")]
    if "alpha_scissored_cm" in optics:
        curves_.append(("alpha_scissored_cm", "scissored_onset_ev",
                        f"scissor to {optics['scissor_from']} (+{optics['scissor_ev']:.2f} eV)", "C3"))
    for key, onset_key, label, color in curves_:
        alpha = np.clip(np.asarray(optics[key]), 1.0, None)
        onset = optics.get(onset_key)
        ax.semilogy(energy, alpha, color=color, lw=1.2,
                    label=label + (f", onset {onset:.2f} eV" if onset is not None else ""))
        if onset is not None:
            ax.axvline(onset, color=color, lw=0.7, ls=":")
    ax.axhline(optics["threshold_cm"], color="0.5", lw=0.7, ls="--")
    ax.set_ylim(1e2, None)
    ax.set_xlim(energy[0], energy[-1])
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("absorption coefficient α (cm⁻¹)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"independent particles, broadening {optics['broadening_ev']} eV", fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def two_level_curves(result: dict, out: Path | BinaryIO, title: str = "") -> None:
    """Hits against cumulative cost (median over seeds, 10-90 % band), and where the money went: each level's
    share of the cost against hits found. `result` as `simulate_two_level` returns it."""
    cheap, expensive = result["costs"]["cheap"], result["costs"]["expensive"]
    fig, (ax, split) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    top = max(max(r["cost"]) for runs in result["strategies"].values() for r in runs)
    grid = np.linspace(0, top, 200)
    for name, runs in result["strategies"].items():
        # a run that stopped (half found, or out of budget) keeps its last count: no drop in the median
        found = np.array([np.interp(grid, r["cost"], r["found"]) for r in runs])
        line, = ax.plot(grid, np.median(found, axis=0), label=name)
        if len(runs) > 1:
            ax.fill_between(grid, np.percentile(found, 10, axis=0), np.percentile(found, 90, axis=0),
                            color=line.get_color(), alpha=0.15)
        hits = np.arange(0, int(np.nanmin([r["found"][-1] for r in runs])) + 1)
        for level, price, style in (("cheap", cheap, ":"), ("expensive", expensive, "-")):
            spent = np.array([np.interp(hits, r["found"], np.asarray(r[level], float) * price) for r in runs])
            split.plot(hits, np.median(spent, axis=0), style, color=line.get_color(),
                       label=f"{name}, {level} level")
    ax.axhline(result["n_targets"] / 2, color="grey", lw=0.8, ls="--", label="half of the targets")
    ax.set_xlabel(f"cumulative cost (cheap = {cheap:g}, expensive = {expensive:g})")
    ax.set_ylabel("hits (expensive value in the goal)")
    ax.legend(fontsize=8)
    split.set_xlabel("hits")
    split.set_ylabel("cost spent on each level (median)")
    split.legend(fontsize=7)
    fig.suptitle(title or f"{result['goal']}: {result['n_pool']} in pool, {result['seeds']} seeds", fontsize=10)
    fig.tight_layout()
    _save(fig, out)
