"""Does lgbm-chgnet's lead hold where a search needs it: on chemistry the model has not seen, and on unrelaxed
substituted cells? (issue 30)

lgbm-chgnet reads what the pretrained CHGNet potential says of each structure. CHGNet was trained on the
Materials Project's relaxations, which include essentially these oxides, and the descriptors are computed on
the database's DFT-relaxed cells. A search predicts candidates made by substitution, whose cells nobody has
relaxed: forces and stresses there are not those of a relaxed cell. Measured here, lgbm-chgnet beside lgbm-lin
(the same learner without the CHGNet block) in one run, on the paper's oxides (structure descriptors, log10):

1. **held-out chemistry**: 5-fold CV (seed 0) against 5-fold with whole chemical systems, and whole prototypes,
   held out (`Dataset.groupings`, as in ml_protocols.py);
2. **unrelaxed substituted cells**: in each fold of that CV, every test oxide whose prototype (anonymized formula
   + space group) has another member in the training part is also predicted from a cell made the way `tansaku
   generate` makes candidates: the parent's cell with the cations replaced (matched by stoichiometric amount,
   then by ionic radius at their sites) and the lattice scaled by the ionic radii. The parent is the group's
   first other member by material id. Same models, same test oxides, DFT-relaxed cell against substituted cell,
   and against the substituted cell relaxed with CHGNet (`tansaku generate substitute --relax`);
3. **the unrelaxed flag**: how many of those cells the domain check of a model with the CHGNet block calls
   unrelaxed (CHGNet's force or pressure beyond the training cells'), and R² on the ones it lets through.

Run: .venv/bin/python benchmarks/ml_chgnet_unseen.py [--properties eps_ionic --merge] [--limit N (a smoke test)]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    RESULTS,
    SHARED,
    checkpointed,
    code_fingerprint,
    data_fingerprint,
    this_run,
    write_results,
)
from tansaku import TansakuError  # noqa: E402
from tansaku.features.sets import (  # noqa: E402
    base_columns,
    raw_features,  # noqa: E402
    strain_columns,
)
from tansaku.models.dataset import load_dataset  # noqa: E402
from tansaku.models.domain import Domain  # noqa: E402
from tansaku.models.evaluation import evaluate  # noqa: E402
from tansaku.models.learners import make_model, model_feature_set  # noqa: E402
from tansaku.sources import generate, relax  # noqa: E402
from tansaku.sources.generate import Limits, Prototype, analyse_prototype, substitute  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import open_database  # noqa: E402
from tansaku.store.tables import Material  # noqa: E402

MODELS = ("lgbm-lin", "lgbm-chgnet")
PROPERTIES = ("eps_electronic", "eps_ionic")
LOOSE = Limits(tolerance_min=0.0, tolerance_max=10.0, octahedral_min=0.0, radius_ratio_slack=0.0, max_sites=200)


def cation_ranks(structure: Structure) -> list[str] | None:
    """Cations ordered by (stoichiometric amount, ionic radius at their site), the order two members of one
    prototype share; None when the cell has not one anion and charge-balanced states."""
    try:
        sites = analyse_prototype(Prototype("x", structure))
    except TansakuError:
        return None
    amounts = structure.composition.reduced_composition
    return sorted(sites.by_radius, key=lambda el: (amounts[el], sites.by_radius.index(el)))


def substituted_cell(parent: Structure, target: Structure) -> Structure | None:
    """The target's composition in the parent's cell, scaled as `tansaku generate` scales a candidate; None
    when the two do not map onto each other."""
    ranks_p, ranks_t = cation_ranks(parent), cation_ranks(target)
    if ranks_p is None or ranks_t is None or len(ranks_p) != len(ranks_t):
        return None
    anion_p = analyse_prototype(Prototype("p", parent)).anion
    anion_t = analyse_prototype(Prototype("t", target)).anion
    elements = {old: [new] for old, new in zip(ranks_p, ranks_t, strict=True)}
    made, _ = substitute([Prototype("parent", parent)], elements, anion_t if anion_t != anion_p else None, LOOSE)
    if not made or made[0].formula != target.composition.reduced_formula:
        return None
    return made[0].structure


WORK = REPO / "benchmarks" / "work" / "ml_chgnet_unseen"


def candidates(db, data) -> tuple[dict[int, tuple[int, Structure]], dict[int, Structure]]:
    """Test oxide (row index) → (parent row index, its substituted cell); and every oxide's stored (relaxed) cell
    by material id."""
    ids = list(data.material_ids)
    with db.session() as session:
        structures = {m.id: m.structure() for m in session.query(Material).filter(Material.id.in_(ids))}
    members = defaultdict(list)
    for row, label in enumerate(data.prototype):
        members[label].append(row)
    made = {}
    for rows in members.values():
        for row in rows:
            others = [r for r in rows if r != row]
            if not others:
                continue
            parent = min(others, key=lambda r: ids[r])
            cell = substituted_cell(structures[ids[parent]], structures[ids[row]])
            if cell is not None:
                made[row] = (parent, cell)
    return made, structures


def tested_rows(made: dict, folds: list) -> list[int]:
    """The substituted oxides the CV tests with their parent in the training part (the only ones predicted)."""
    fold_of = {int(r): k for k, (_, test) in enumerate(folds) for r in test}
    return sorted(r for r, (parent, _) in made.items() if fold_of[r] != fold_of[parent])


RELAX_KEY = {"code": code_fingerprint(relax, generate), "fmax": relax.FMAX, "steps": relax.MAX_STEPS}


def _relax_one(item: tuple[str, Structure]) -> tuple[str, dict]:
    """One substituted cell relaxed as `generate substitute --relax` does, checkpointed."""
    name, cell = item

    def compute() -> dict:
        try:
            done = relax.relax(cell)
        except (TansakuError, ValueError, RuntimeError) as error:
            return {"error": str(error)}
        return {"structure": done.structure.as_dict(), **done.record()}

    cell_key = data_fingerprint(cell.lattice.matrix, cell.frac_coords, cell.atomic_numbers)
    return name, checkpointed(WORK / f"{name}-{cell.composition.reduced_formula}.json",
                              RELAX_KEY | {"cell": cell_key}, compute)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # graphs of a few atoms: two single-threaded workers outrun one with two threads


def relaxed_cells(cells: dict[str, Structure], say) -> dict[str, dict]:
    """Each substituted cell relaxed with CHGNet (checkpointed per cell), with how the relaxation went; one
    process per core."""
    from concurrent.futures import ProcessPoolExecutor

    WORK.mkdir(parents=True, exist_ok=True)
    out, start = {}, time.perf_counter()
    with ProcessPoolExecutor(2, initializer=_one_thread) as pool:
        for n, (name, result) in enumerate(pool.map(_relax_one, sorted(cells.items()), chunksize=4), 1):
            out[name] = result
            if n % 100 == 0:
                say(f"relaxed {n} of {len(cells)} substituted cells ({time.perf_counter() - start:.0f} s)")
    return out


def one_property(db, prop: str, say) -> dict:
    out: dict = {"models": {}}
    for name in MODELS:
        model = make_model(name)
        feature_set = model_feature_set(model, "structure")
        data = load_dataset(db, prop, feature_set, subset="paper")
        if "made" not in out:
            start = time.perf_counter()
            made, relaxed = candidates(db, data)
            folds = list(KFold(5, shuffle=True, random_state=0).split(data.X))
            rows = tested_rows(made, folds)
            mids = [str(data.material_ids[r]) for r in rows]
            chgnet = relaxed_cells({m: made[r][1] for m, r in zip(mids, rows, strict=True)}, say)
            fine = {i for i, m in enumerate(mids) if "structure" in chgnet[m]}
            volume_change = [made[r][1].volume / relaxed[data.material_ids[r]].volume - 1 for r in rows]
            after = [Structure.from_dict(chgnet[mids[i]]["structure"]).volume
                     / relaxed[data.material_ids[rows[i]]].volume - 1 for i in fine]
            out["made"] = {"n": len(made), "tested": len(rows), "of": len(data.y), "seconds": round(time.perf_counter() - start),
                           "volume_change_abs_median": float(np.median(np.abs(volume_change))),
                           "volume_change_abs_p90": float(np.percentile(np.abs(volume_change), 90)),
                           "chgnet_relaxed": len(fine),
                           "chgnet_converged": sum(bool(chgnet[mids[i]]["relax_converged"]) for i in fine),
                           "chgnet_volume_change_abs_median": float(np.median(np.abs(after))),
                           "chgnet_volume_change_abs_p90": float(np.percentile(np.abs(after), 90))}
            say(f"{prop}: {len(made)} substituted cells of {len(data.y)} oxides, {len(rows)} tested, {len(fine)} "
                "relaxed by CHGNet")
        start = time.perf_counter()
        X_made = raw_features([made[r][1] for r in rows], feature_set)
        X_chgnet = np.full_like(X_made, np.nan)
        X_chgnet[sorted(fine)] = raw_features([Structure.from_dict(chgnet[mids[i]]["structure"]) for i in sorted(fine)],
                                              feature_set)
        pred = {"relaxed": [], "substituted": [], "chgnet": []}
        flags = {"relaxed": [], "substituted": [], "chgnet": []}
        tested = []
        for train, test in folds:
            fitted = clone(model).fit(data.X[train], data.y[train])
            strain = strain_columns(data.X[train], feature_set)
            domain = Domain.fit([data.groups[t] for t in train], base_columns(data.X[train], feature_set),
                                strain=strain) if strain is not None else None
            in_train, in_test = set(train.tolist()), set(test.tolist())
            chosen = [i for i, r in enumerate(rows) if r in in_test and made[r][0] in in_train and i in fine]
            for kind, X in (("relaxed", data.X[[rows[i] for i in chosen]]), ("substituted", X_made[chosen]),
                            ("chgnet", X_chgnet[chosen])):
                pred[kind] += list(fitted.predict(X))
                if domain is not None:
                    flags[kind] += [bool(domain.unrelaxed(row)) for row in strain_columns(X, feature_set)]
            tested += [rows[i] for i in chosen]
        y = data.y[tested]
        grouped = evaluate(model, data.X, data.y, data.groupings(), (5, 1), 0, which=("cv", "grouped"))
        result = {
            "cv": grouped["cv"]["r2_mean"], "chemsys": grouped["grouped"]["r2_mean"],
            "chemsys_groups": grouped["grouped"]["groups"],
            "prototype": grouped["grouped_prototype"]["r2_mean"],
            "prototype_groups": grouped["grouped_prototype"]["groups"],
            "substituted": {"n": len(tested), "r2_relaxed": float(r2_score(y, pred["relaxed"])),
                            "r2_substituted": float(r2_score(y, pred["substituted"])),
                            "r2_chgnet_relaxed": float(r2_score(y, pred["chgnet"])),
                            "mae_relaxed": float(np.mean(np.abs(y - np.array(pred["relaxed"])))),
                            "mae_substituted": float(np.mean(np.abs(y - np.array(pred["substituted"])))),
                            "mae_chgnet_relaxed": float(np.mean(np.abs(y - np.array(pred["chgnet"]))))},
            "seconds": round(time.perf_counter() - start)}
        if flags["substituted"]:
            passed = ~np.array(flags["substituted"])
            result["flag"] = {kind: float(np.mean(f)) for kind, f in flags.items()} | {
                "r2_substituted_passed": float(r2_score(y[passed], np.array(pred["substituted"])[passed])),
                "n_passed": int(passed.sum())}
        out["models"][name] = result
        say(f"{prop} {name}: {result}")
    out["run"] = this_run()
    return out


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(results: dict) -> str:
    lines = ["# lgbm-chgnet on unseen chemistry and on unrelaxed substituted cells (issue 30)", "",
             "R² of log10 ε on the paper's oxides, structure descriptors, lgbm-lin and lgbm-chgnet in one run. "
             "CV: 5-fold, seed 0. Held out: 5-fold with whole chemical systems or whole prototypes on one side. "
             "Substituted set: the test oxides of that CV whose prototype has a member in the training part, "
             "predicted from their DFT-relaxed cell, from the parent's cell with the cations substituted and the "
             "lattice scaled (how `tansaku generate` makes a candidate), and from that cell relaxed with CHGNet "
             "(`generate substitute --relax`).", "",
             "| target | model | CV | chemical systems held out | prototypes held out | substituted set: DFT cell "
             "| substituted cell | substituted, CHGNet-relaxed | MAE (log10) DFT → substituted → CHGNet-relaxed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for prop, res in results["properties"].items():
        for name, r in res["models"].items():
            s = r["substituted"]
            lines.append(f"| {prop} | {name} | {r['cv']:.3f} | {r['chemsys']:.3f} | {r['prototype']:.3f} | "
                         f"{s['r2_relaxed']:.3f} | {s['r2_substituted']:.3f} | {_f(s.get('r2_chgnet_relaxed'))} | "
                         f"{s['mae_relaxed']:.3f} → {s['mae_substituted']:.3f} → {_f(s.get('mae_chgnet_relaxed'))} |")
    lines += ["", "The unrelaxed flag of a model with the CHGNet block (`models.domain`: CHGNet's largest force or "
              "|pressure| beyond 1.5× the training cells' 99th percentile), per fold, on the same test oxides:", "",
              "| target | flagged: DFT cell | substituted cell | CHGNet-relaxed | R² of the substituted cells not "
              "flagged (n) |", "| --- | --- | --- | --- | --- |"]
    for prop, res in results["properties"].items():
        for r in res["models"].values():
            if f := r.get("flag"):
                lines.append(f"| {prop} | {f['relaxed']:.1%} | {f['substituted']:.1%} | {f['chgnet']:.1%} | "
                             f"{f['r2_substituted_passed']:.3f} ({f['n_passed']}) |")
    lines += [""]
    for prop, res in results["properties"].items():
        m = res["made"]
        n = next(iter(res["models"].values()))["substituted"]["n"]
        if "tested" not in m:  # a row from before the CHGNet-relaxed column
            lines.append(f"- {prop}: {m['n']} of {m['of']} oxides could be made from a prototype parent; {n} of them "
                         "were tested with their parent in training (all of them predicted; no CHGNet relaxation in "
                         f"that version of this benchmark). Run: {res['run']['commit']}, {res['run']['date']}.")
            continue
        lines.append(f"- {prop}: {m['n']} of {m['of']} oxides could be made from a prototype parent; "
                     f"{m['tested']} have it in the training part of their fold, {m['chgnet_relaxed']} of them relaxed "
                     f"by CHGNet ({m['chgnet_converged']} to 0.05 eV/Å within 500 steps) and {n} tested. Cell "
                     f"volume of those against the DFT one: substituted median |ΔV/V| {m['volume_change_abs_median']:.1%} (90th percentile "
                     f"{m['volume_change_abs_p90']:.1%}), CHGNet-relaxed {m['chgnet_volume_change_abs_median']:.1%} "
                     f"({m['chgnet_volume_change_abs_p90']:.1%}). Run: {res['run']['commit']}, {res['run']['date']}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--properties", nargs="+", default=list(PROPERTIES))
    parser.add_argument("--merge", action="store_true",
                        help="Keep the committed results of the properties not run now (each says its own run).")
    parser.add_argument("--limit", type=int, help="Only the first N oxide files (a smoke test; results go to "
                        "ml_chgnet_unseen_smoke).")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp())
    source = SHARED / "datasets" / "oxi_diel_db"
    if args.limit:
        (tmp / "oxi" / "data").mkdir(parents=True)
        for path in sorted((source / "data").glob("*.json"))[: args.limit]:
            (tmp / "oxi" / "data" / path.name).write_bytes(path.read_bytes())
        (tmp / "oxi" / "paper_subset_ids.txt").write_text((source / "paper_subset_ids.txt").read_text())
        source = tmp / "oxi"
    db = open_database(tmp / "ml.db")
    import_oxi_diel_db(db, source)
    results = {"properties": {}}
    if args.merge:
        earlier = json.loads((RESULTS / "ml_chgnet_unseen.json").read_text())["properties"]
        results["properties"] = {p: r for p, r in earlier.items() if p not in args.properties}
    for prop in args.properties:
        results["properties"][prop] = one_property(db, prop, lambda s: print(s, flush=True))
        write_results("ml_chgnet_unseen" + ("_smoke" if args.limit else ""), results, markdown(results))


if __name__ == "__main__":
    main()
