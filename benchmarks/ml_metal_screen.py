"""Does the metal screen (`train --metal-screen`) tell metals from insulators in chemistry it has not seen, and
how many of the oxide database's insulators does it flag by mistake?

Training table: matbench's PBE gaps (matbench_mp_gap.csv.gz), one row per reduced formula (median gap over
polymorphs, metal below 0.01 eV), with every formula of the reference database's 1,266 paper oxides taken out.
1. Five folds grouped by chemical system (no element set on both sides), out-of-fold P(metal): ROC AUC, and at
   P >= 0.5 the share of metals flagged, the share of flags that are metals, and the share of insulators flagged
   (all, and those with a gap of 1 eV or more).
2. The screen trained on the whole table, on the 1,266 paper oxides (PBEsol insulators in the database):
   how many it flags, and which.
3. The same screen on matbench's experimental gaps (matbench_expt_gap.csv.gz, metals at 0 eV) whose formulas
   are not in the training table: an independent set.

Run: .venv/bin/python benchmarks/ml_metal_screen.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Composition  # noqa: E402

from _common import SHARED, no_options, this_run, write_results  # noqa: E402
from tansaku.models.metal_screen import FLAG_PROBABILITY, METAL_GAP_EV, MetalScreen  # noqa: E402
from tansaku.sources.csv_table import median_by_formula  # noqa: E402

MATBENCH = SHARED / "datasets" / "matbench"
OXIDES = SHARED / "datasets" / "oxi_diel_db"
FOLDS = 5
NAMED = ("AgSbO2", "ReO3", "SrVO3", "TiO", "NbO", "RuO2", "CrO2", "LaNiO3", "MgO", "ZnO", "SnO2", "BaTiO3")


def table(name: str) -> dict[str, float]:
    return median_by_formula(MATBENCH / name)


def paper_oxides() -> dict[str, float]:
    """Reduced formula → the database's PBEsol gap, for the paper's 1,266 oxides."""
    out = {}
    for mp_id in (OXIDES / "paper_subset_ids.txt").read_text().split():
        entry = json.loads((OXIDES / "data" / f"{mp_id}.json").read_text())
        out[Composition(entry["formula"]).reduced_formula] = float(entry["band_gap"])
    return out


def flag_rates(p: np.ndarray, metal: np.ndarray, gaps: np.ndarray) -> dict:
    flagged = p >= FLAG_PROBABILITY
    wide = gaps >= 1.0
    return {"auc": float(roc_auc_score(metal, p)), "metals_flagged": float(flagged[metal].mean()),
            "flags_that_are_metals": float(metal[flagged].mean()) if flagged.any() else None,
            "insulators_flagged": float(flagged[~metal].mean()),
            "insulators_1ev_flagged": float(flagged[~metal & wide].mean()), "n": int(len(p)),
            "metals": int(metal.sum())}


def main() -> None:
    no_options(__doc__)
    oxides = paper_oxides()
    mp = {f: g for f, g in table("matbench_mp_gap.csv.gz").items() if f not in oxides}
    formulas = list(mp)
    gaps = np.array([mp[f] for f in formulas])
    metal = gaps < METAL_GAP_EV
    systems = np.array(["-".join(sorted(el.symbol for el in Composition(f).elements)) for f in formulas])
    names, codes = np.unique(systems, return_inverse=True)
    fold_of = np.random.default_rng(0).permutation(len(names))[codes] % FOLDS
    oof = np.full(len(formulas), np.nan)
    for fold in range(FOLDS):
        test = fold_of == fold
        screen = MetalScreen.fit({f: mp[f] for f, t in zip(formulas, test, strict=True) if not t}, "folds")
        oof[test] = screen.probabilities([f for f, t in zip(formulas, test, strict=True) if t])
        print(f"fold {fold + 1}/{FOLDS}", flush=True)
    known = np.isfinite(oof)
    grouped = flag_rates(oof[known], metal[known], gaps[known])

    screen = MetalScreen.fit(mp, "matbench_mp_gap.csv.gz (paper oxides removed)")
    oxide_names = list(oxides)
    p_oxides = screen.probabilities(oxide_names)
    flagged = sorted(((f, oxides[f], float(p)) for f, p in zip(oxide_names, p_oxides, strict=True)
                      if p >= FLAG_PROBABILITY), key=lambda r: -r[2])
    expt = {f: g for f, g in table("matbench_expt_gap.csv.gz").items() if f not in mp and f not in oxides}
    expt_names = list(expt)
    p_expt = screen.probabilities(expt_names)
    expt_gaps = np.array([expt[f] for f in expt_names])
    ok = np.isfinite(p_expt)
    experimental = flag_rates(p_expt[ok], expt_gaps[ok] < METAL_GAP_EV, expt_gaps[ok])
    oof_of = dict(zip(formulas, oof, strict=True))
    named = {}
    for formula in NAMED:
        reduced = Composition(formula).reduced_formula
        if reduced in oof_of:
            named[reduced] = {"p": float(oof_of[reduced]), "how": "held out (grouped fold)", "gap": mp[reduced]}
        else:
            named[reduced] = {"p": float(screen.probabilities([reduced])[0]), "how": "not in the table",
                              "gap": oxides.get(reduced)}

    def pct(x):
        return "–" if x is None else f"{x:.1%}"

    lines = ["# Metal screen: a composition classifier of metals (`train --metal-screen`)", "",
             f"Training table: matbench_mp_gap.csv.gz, {len(formulas)} compositions (median gap over polymorphs; "
             f"metal below {METAL_GAP_EV} eV: {metal.mean():.0%}), the paper's {len(oxides)} oxide formulas removed. "
             f"Flag at P(metal) >= {FLAG_PROBABILITY}.", "",
             "| set | compositions | metals | ROC AUC | metals flagged | flags that are metals | insulators flagged "
             "| insulators ≥ 1 eV flagged |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in ((f"MP gaps, {FOLDS} folds grouped by chemical system (out of fold)", grouped),
                     ("experimental gaps not in the training table", experimental)):
        lines.append(f"| {label} | {r['n']} | {r['metals']} | {r['auc']:.3f} | {pct(r['metals_flagged'])} | "
                     f"{pct(r['flags_that_are_metals'])} | {pct(r['insulators_flagged'])} | "
                     f"{pct(r['insulators_1ev_flagged'])} |")
    lines += ["", f"The reference database's {len(oxides)} paper oxides (insulators by their PBEsol gap): "
              f"**{len(flagged)} flagged** ({len(flagged) / len(oxides):.1%}).", ""]
    if flagged:
        lines += ["| oxide | database gap (eV) | P(metal) |", "| --- | --- | --- |"]
        lines += [f"| {f} | {g:.2f} | {p:.2f} |" for f, g, p in flagged[:30]]
        if len(flagged) > 30:
            lines.append(f"| … {len(flagged) - 30} more | | |")
    lines += ["", "Named compositions (P(metal); held out by its chemical system where the table has it):", "",
              "| composition | P(metal) | how | gap in the table (eV) |", "| --- | --- | --- | --- |"]
    lines += [f"| {f} | {v['p']:.2f} | {v['how']} | {'–' if v['gap'] is None else format(v['gap'], '.2f')} |"
              for f, v in named.items()]
    write_results("ml_metal_screen", {"grouped": grouped, "experimental": experimental,
                                      "paper_oxides_flagged": flagged, "paper_oxides": len(oxides),
                                      "named": named, "run": this_run()}, "\n".join(lines))


if __name__ == "__main__":
    main()
