"""lgbm-chgnet and lgbm-lin on generated candidates CHGNet has not seen, against our DFT (issue 30).

`ml_chgnet_unseen.py` holds out chemistry and substitutes cells within the reference database, whose compounds
CHGNet's training set (the Materials Project's relaxations) mostly holds. Here the candidates are new: the
α-NaFeO2-type NaScO2 (mp-7914, R-3m, 4 atoms) with its cations substituted, kept only when the composition is
in neither the reference database nor the Materials Project's formation-energy set (matbench `mp_e_form`, 95k
formulas: a proxy for what CHGNet saw). As a user would:
1. `generate substitute --relax`: substituted, then relaxed with CHGNet (both cells kept);
2. lgbm-lin and lgbm-chgnet trained on the paper's 1,266 oxides (structure descriptors) predict ε∞ and ε_ion
   from the substituted cell and from the CHGNet-relaxed one, with the unrelaxed flag of the CHGNet block;
3. `run dielectric` (PBEsol relaxation, DFPT) on the CHGNet-relaxed cell gives the reference.
Reported per candidate, and the mean absolute error in log10 over those DFT finishes (ε_ion only without
imaginary modes: a hypothetical compound may be unstable in its prototype).

Run: nice .venv/bin/python benchmarks/dft_candidates.py [--preset standard --mpi-procs 2 --max 6]
Resumable: the DFT steps are kept under --work, the predictions checkpointed there with the code that made them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    SHARED,
    checkpointed,
    code_fingerprint,
    data_fingerprint,
    local_dft_context,
    this_run,
    write_results,
)
from tansaku.cli.run_cmd import parse_overrides  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.features import mlip  # noqa: E402
from tansaku.features.sets import base_columns, raw_features, strain_columns  # noqa: E402
from tansaku.models import learners  # noqa: E402
from tansaku.models.dataset import load_dataset  # noqa: E402
from tansaku.models.domain import Domain  # noqa: E402
from tansaku.sources import generate, relax  # noqa: E402
from tansaku.sources.generate import Prototype, parse_site_elements, store_candidates, substitute  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import Material, open_database  # noqa: E402
from tansaku.workflows.dielectric import run_dielectric  # noqa: E402

OXIDES = SHARED / "datasets" / "oxi_diel_db"
PROTOTYPE = "mp-7914"  # NaScO2
SITES = "A=Li,Na,K,Rb,Cs,Ag,Cu,Tl;B=Sc,Y,La,Al,Ga,In,Tl,Sb,Bi"
MODELS = ("lgbm-lin", "lgbm-chgnet")
PROPERTIES = ("eps_electronic", "eps_ionic")


def materials_project_formulas() -> set[str]:
    with gzip.open(SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz", "rt") as handle:
        return {Composition(row["formula"]).reduced_formula for row in csv.DictReader(handle)}


def unseen_candidates(db, limit: int) -> list[generate.Candidate]:
    """Substitutions of the prototype whose composition neither database holds, CHGNet-relaxed (the unrelaxed
    cell kept in `checks` as a dict), first `limit` by formula."""
    with db.session() as session:
        parent = session.query(Material).filter_by(source_id=PROTOTYPE).one()
        prototype = Prototype(PROTOTYPE, parent.structure(), parent.id)
        known = {m.reduced_formula for m in session.query(Material)}
    candidates, _ = substitute([prototype], parse_site_elements(SITES))
    seen = materials_project_formulas() | known
    chosen = sorted((c for c in candidates if c.formula not in seen), key=lambda c: c.formula)[:limit]
    unrelaxed = {c.formula: c.structure.copy() for c in chosen}
    refused = relax.relax_candidates(chosen)
    for refusal in refused:
        print(f"{refusal.formula}: {refusal.reason}", flush=True)
    for candidate in chosen:
        candidate.checks = {**candidate.checks, "unrelaxed": unrelaxed[candidate.formula].as_dict()}
    return chosen


def predictions(db, cells: dict[str, tuple[Structure, Structure]]) -> dict:
    """Per property, model and candidate: log10 ε from the substituted and from the relaxed cell, and whether the
    CHGNet block calls each unrelaxed."""
    out: dict = {}
    described: dict[tuple[str, int], np.ndarray] = {}  # both properties' models read the same feature sets
    for prop in PROPERTIES:
        for name in MODELS:
            model = learners.make_model(name)
            feature_set = learners.model_feature_set(model, "structure")
            data = load_dataset(db, prop, feature_set, subset="paper")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = clone(model).fit(data.X, data.y)
            strain = strain_columns(data.X, feature_set)
            domain = Domain.fit(list(data.groups), base_columns(data.X, feature_set), strain=strain) \
                if strain is not None else None
            for kind, index in (("substituted", 0), ("relaxed", 1)):
                if (feature_set, index) not in described:
                    described[feature_set, index] = raw_features([pair[index] for pair in cells.values()],
                                                                 feature_set)
                X = described[feature_set, index]
                flags = ([bool(domain.unrelaxed(row)) for row in strain_columns(X, feature_set)] if domain
                         else [None] * len(X))
                for formula, value, flag in zip(cells, fitted.predict(X), flags, strict=True):
                    out.setdefault(formula, {}).setdefault(prop, {}).setdefault(name, {})[kind] = {
                        "log10": float(value), "unrelaxed_flag": flag}
            print(f"{prop} {name}: predicted", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--max", type=int, default=6, help="How many candidates (first by formula).")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "dft_candidates")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db = open_database(args.work / "candidates.db")
    with db.session() as session:
        imported = session.query(Material).filter_by(source_id=PROTOTYPE).first() is not None
    if not imported:
        import_oxi_diel_db(db, OXIDES)
    key = {"code": code_fingerprint(generate, relax, mlip), "sites": SITES, "max": args.max}
    chosen = checkpointed(args.work / "candidates.json", key, lambda: [
        {"formula": c.formula, "relaxed": c.structure.as_dict(), "unrelaxed": c.checks.pop("unrelaxed"),
         "substitution": c.substitution, "oxidation_states": c.oxidation_states, "lattice_scale": c.lattice_scale,
         "checks": c.checks, "relaxation": c.relaxation} for c in unseen_candidates(db, args.max)])
    cells = {c["formula"]: (Structure.from_dict(c["unrelaxed"]), Structure.from_dict(c["relaxed"])) for c in chosen}
    predicted = checkpointed(args.work / "predictions.json", key | {
        "models": code_fingerprint(learners, sys.modules["tansaku.features.sets"]),
        "cells": data_fingerprint(*(s.lattice.matrix for pair in cells.values() for s in pair))},
        lambda: predictions(db, cells))
    stored = [generate.Candidate(cells[c["formula"]][1], PROTOTYPE, c["substitution"], c["oxidation_states"],
                                 c["lattice_scale"], c["checks"], relaxation=c["relaxation"]) for c in chosen]
    with db.session() as session:
        parent = session.query(Material).filter_by(source_id=PROTOTYPE).one()
        prototypes = [Prototype(PROTOTYPE, parent.structure(), parent.id)]
    store_candidates(db, stored, prototypes, subset="candidates")
    ctx = local_dft_context(db, preset(args.preset, parse_overrides(args.overrides)), args.preset, args.mpi_procs,
                            args.work / "runs")
    rows = []
    for candidate, record in zip(stored, chosen, strict=True):
        formula = record["formula"]
        start = time.perf_counter()
        result = run_dielectric(ctx, candidate.material_id, lambda step, f=formula: print(f"{f}: {step}", flush=True))
        rows.append({"formula": formula, "status": result.status, "reason": result.reason,
                     "eps_electronic": result.eps_electronic, "eps_ionic": result.eps_ionic,
                     "band_gap": result.band_gap, "imaginary_modes": result.imaginary_modes,
                     "relaxation": record["relaxation"], "predicted": predicted[formula],
                     "seconds": time.perf_counter() - start, "run": this_run()})
        report(rows, args)


def _mae(rows: list[dict], prop: str, model: str, kind: str) -> tuple[float | None, int]:
    errors = [abs(r["predicted"][prop][model][kind]["log10"] - np.log10(r[prop])) for r in rows
              if r["status"] == "done" and r[prop] and r[prop] > 0
              and not (prop == "eps_ionic" and r["imaginary_modes"])]
    return (float(np.mean(errors)) if errors else None), len(errors)


def report(rows: list[dict], args) -> None:
    def cell(row: dict, prop: str) -> str:
        ours = row[prop]
        shown = "–" if ours is None else f"{ours:.2f}"
        if prop == "eps_ionic" and row["imaginary_modes"]:
            shown += " (imaginary modes)"
        guesses = " / ".join(f"{10 ** row['predicted'][prop][m][k]['log10']:.2f}" for m in MODELS
                             for k in ("substituted", "relaxed"))
        return f"{shown} | {guesses}"

    table = "\n".join(
        f"| {r['formula']} | {r['status']} | {r['band_gap'] if r['band_gap'] is None else round(r['band_gap'], 2)} | "
        f"{cell(r, 'eps_electronic')} | {cell(r, 'eps_ionic')} | "
        f"{'yes' if r['predicted']['eps_ionic']['lgbm-chgnet']['substituted']['unrelaxed_flag'] else 'no'} / "
        f"{'yes' if r['predicted']['eps_ionic']['lgbm-chgnet']['relaxed']['unrelaxed_flag'] else 'no'} |"
        for r in rows)
    summary = []
    for prop in PROPERTIES:
        for model in MODELS:
            parts = []
            for kind in ("substituted", "relaxed"):
                mae, n = _mae(rows, prop, model, kind)
                parts.append(f"{kind} {'–' if mae is None else f'{mae:.3f}'} (n = {n})")
            summary.append(f"- {prop}, {model}: mean |log10 error| " + ", ".join(parts))
    markdown = f"""# Generated candidates CHGNet has not seen: predicted against computed ε (issue 30)

NaScO2 (mp-7914, α-NaFeO2 type) with `{SITES}` substituted; compositions in neither the reference database nor
the Materials Project's formation-energy set, first {args.max} by formula. Predicted from the substituted cell and
from the CHGNet-relaxed cell (lin = lgbm-lin, chg = lgbm-chgnet, trained on the paper's 1,266 oxides); computed:
`run dielectric`, preset `{args.preset}`, {args.mpi_procs} MPI processes, on the CHGNet-relaxed cell.

| candidate | status | PBEsol gap (eV) | ε∞ ours | ε∞ lin sub. / lin rel. / chg sub. / chg rel. | ε_ion ours | ε_ion lin sub. / lin rel. / chg sub. / chg rel. | flagged unrelaxed (sub. / rel.) |
| --- | --- | --- | --- | --- | --- | --- | --- |
{table}

{chr(10).join(summary)}
"""
    write_results("dft_candidates" + ("" if args.preset == "standard" else f"_{args.preset}"),
                  {"preset": args.preset, "sites": SITES, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
