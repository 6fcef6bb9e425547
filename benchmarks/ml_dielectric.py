"""Dielectric prediction on the reference paper's 1,266 oxides: accuracy, calibration, importance and
descriptor speed against matminer, all in one run.

Run: .venv/bin/python benchmarks/ml_dielectric.py [--models rf blend] [--cv 5x3] [--feature-sets composition]
Targets (issue 3): mean repeated-CV R² above the paper (0.87, 0.89, 0.65, 0.73 for electronic/ionic ×
composition/structure); stretch 0.91, 0.945, 0.72, 0.80. Composition descriptors ≥ 20× and structure
descriptors ≥ 5× faster than matminer featurizers of equal definition. Structure-only models (lgbm-chgnet)
have no composition rows; what featurizing a model's extra blocks first cost is in the feature-cache line.
lgbm-attn's network is pretrained here, through the product (`tansaku import csv` + `tansaku pretrain`), on the
132,752 matbench formation energies; what that cost is in the results.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED, run_number, runs_legend, this_run, write_results  # noqa: E402
from tansaku.features.elements import element_table  # noqa: E402
from tansaku.features.sets import EXTRA_BLOCKS, cached_features, raw_features  # noqa: E402
from tansaku.models.dataset import load_dataset  # noqa: E402
from tansaku.models.evaluation import evaluate  # noqa: E402
from tansaku.models.learners import MODELS, make_model, model_feature_set  # noqa: E402
from tansaku.plots.figures import importance as plot_importance  # noqa: E402
from tansaku.plots.figures import parity  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import open_database  # noqa: E402

PAPER = {("eps_electronic", "composition"): 0.87, ("eps_electronic", "structure"): 0.89,
         ("eps_ionic", "composition"): 0.65, ("eps_ionic", "structure"): 0.73}
STRETCH = {("eps_electronic", "composition"): 0.91, ("eps_electronic", "structure"): 0.945,
           ("eps_ionic", "composition"): 0.72, ("eps_ionic", "structure"): 0.80}
GROUPS = {  # descriptor families for grouped permutation importance
    "principal quantum number (row)": ["_row"], "atomic mass": ["atomic_mass"], "density": ["density"],
    "neighbour distances": ["nn_distance", "first_shell_distance", "cation_anion_distance", "anion_anion"],
    "electronegativity": ["_X", "delta_X", "ionic_character", "en_allen"], "polarizability": ["polarizab"],
    "radii": ["radius", "radii", "packing"], "coordination": ["coordination"], "oxidation states": ["oxidation"],
    "group/block/valence": ["group", "block", "valence", "unfilled"], "melting point": ["melting"],
    "Ewald energy": ["ewald"], "volume": ["volume"], "symmetry": ["spacegroup", "crystal_system"],
    "cation kinds (d0, lone pair, d10)": ["d0_cation", "lone_pair_cation", "d10_cation"],
    "bond valence": ["bond_valence", "instability_index", "under_bonded"],
    "ion fractions (stacked ridge only)": ["ion_fraction:"],
    "CHGNet learned site features": ["mlip_crystal", "mlip_cation", "mlip_anion"],
    "CHGNet energy, forces, stress": ["mlip_energy", "mlip_max", "mlip_pressure", "mlip_stress"],
    "polar stiffness (CHGNet)": ["polar_stiffness", "polar_softness"],
}


def speed(structures, formulas, sample: int) -> dict:
    from matminer.featurizers.composition import ElementProperty, Stoichiometry
    from matminer.featurizers.structure import (
        DensityFeatures,
        EwaldEnergy,
        GlobalSymmetryFeatures,
        StructuralHeterogeneity,
    )
    from pymatgen.core import Composition

    from tansaku.chemistry.oxidation import guess_oxidation_states, icsd_occurrence

    element_table()  # one-time table builds, excluded like matminer's data loading
    icsd_occurrence()
    props = ["X", "row", "group", "atomic_mass", "mendeleev_no", "melting_point", "atomic_radius",
             "thermal_conductivity", "block"]
    mm_comp = [ElementProperty("pymatgen", props, ["minimum", "maximum", "range", "mean", "std_dev"]),
               Stoichiometry(p_list=[2, 3, 5, 7, 10], num_atoms=False)]
    comps = [Composition(f) for f in formulas]
    mm_comp[0].featurize(comps[0])
    from matminer.featurizers.composition import IonProperty, OxidationStates
    from matminer.featurizers.conversions import CompositionToOxidComposition

    from tansaku.features.composition import CompositionFeaturizer

    converter = CompositionToOxidComposition(max_sites=-50)
    oxid, ion = OxidationStates(), IonProperty(fast=True)

    def matminer_seconds(with_oxidation: bool) -> float:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for comp in comps:
                for f in mm_comp:
                    f.featurize(comp)
                if with_oxidation:
                    with contextlib.suppress(Exception):  # no charge-balanced guess: matminer raises; time counts
                        decorated_comp = converter.featurize(comp)[0]
                        oxid.featurize(decorated_comp)
                        ion.featurize(decorated_comp)
        return time.perf_counter() - start

    # (1) element statistics + stoichiometry (+ our cation/anion descriptors) without oxidation states
    start = time.perf_counter()
    CompositionFeaturizer(oxidation=False).raw(comps)
    ours_plain = time.perf_counter() - start
    mm_plain = matminer_seconds(with_oxidation=False)
    # (2) the whole composition set: also oxidation-state statistics (charge-balanced guesses, computed cold on
    # both sides) and ionic character, which matminer computes with CompositionToOxidComposition,
    # OxidationStates and IonProperty (the same definitions)
    guess_oxidation_states.cache_clear()
    start = time.perf_counter()
    raw_features(comps, "composition")
    ours_comp = time.perf_counter() - start
    mm_comp_t = matminer_seconds(with_oxidation=True)
    subset = structures[:sample]
    decorated = []
    for s in subset:
        states = guess_oxidation_states(s.composition.reduced_formula)
        d = s.copy()
        if states:
            d.add_oxidation_state_by_element(states)
        decorated.append(d)
    start = time.perf_counter()
    from tansaku.features.structure import StructureFeaturizer

    StructureFeaturizer().raw(subset)
    ours_struct = time.perf_counter() - start
    mm_struct = [DensityFeatures(), GlobalSymmetryFeatures(["spacegroup_num", "crystal_system_int"]), EwaldEnergy(),
                 StructuralHeterogeneity()]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in decorated:
            for f in mm_struct:
                with contextlib.suppress(Exception):  # matminer fails on a few cells; its time still counts
                    f.featurize(s)
    mm_struct_t = time.perf_counter() - start
    per_k = 1000.0
    return {
        "composition": {"ours_s_per_1000": ours_comp / len(formulas) * per_k,
                        "matminer_s_per_1000": mm_comp_t / len(formulas) * per_k, "ratio": mm_comp_t / ours_comp,
                        "n": len(formulas),
                        "matminer_featurizers": "ElementProperty, Stoichiometry, CompositionToOxidComposition, "
                                                "OxidationStates, IonProperty"},
        "composition_without_oxidation": {
            "ours_s_per_1000": ours_plain / len(formulas) * per_k,
            "matminer_s_per_1000": mm_plain / len(formulas) * per_k, "ratio": mm_plain / ours_plain,
            "n": len(formulas), "matminer_featurizers": "ElementProperty, Stoichiometry"},
        "structure": {"ours_s_per_1000": ours_struct / len(subset) * per_k,
                      "matminer_s_per_1000": mm_struct_t / len(subset) * per_k, "ratio": mm_struct_t / ours_struct,
                      "n": len(subset),
                      "matminer_featurizers": "DensityFeatures, GlobalSymmetryFeatures, EwaldEnergy, "
                                              "StructuralHeterogeneity"},
    }


def grouped_permutation(model, X, y, names, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    base = np.mean((model.predict(X) - y) ** 2)
    out = {}
    for group, keys in GROUPS.items():
        cols = [i for i, n in enumerate(names) if any(k in n for k in keys)]
        if not cols:
            continue
        losses = []
        for _ in range(3):
            Xp = X.copy()
            perm = rng.permutation(len(y))
            Xp[:, cols] = X[perm][:, cols]
            losses.append(np.mean((model.predict(Xp) - y) ** 2))
        out[group] = float(np.mean(losses) - base)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def linear_share(model) -> float | None:
    """A stacked model's share of the trees' gain taken by the ridge column (None: not a stacked model)."""
    while model is not None:
        if hasattr(model, "linear_importance_"):
            return float(model.linear_importance_)
        model = getattr(model, "learner_", None)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rf", "blend"])
    parser.add_argument("--cv", default="5x3")
    parser.add_argument("--speed-sample", type=int, default=150)
    parser.add_argument("--feature-sets", nargs="+", default=["composition", "structure"])
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--merge", action="store_true",
                        help="Keep the stored rows of other models (add or replace only the --models given) and the "
                             "stored speed section (re-measure it with --speed-only on an idle machine).")
    parser.add_argument("--speed-only", action="store_true",
                        help="Measure descriptor speed again and keep the stored model results.")
    parser.add_argument("--render-only", action="store_true",
                        help="Compute nothing: write the stored results again, every row with the run it came from.")
    args = parser.parse_args()
    if args.speed_only:
        rerun_speed(args)
        return
    if args.render_only:
        render_again()
        return
    k, r = (int(x) for x in args.cv.split("x"))
    tmp = Path(tempfile.mkdtemp())
    db = open_database(tmp / "ml.db")
    import_oxi_diel_db(db, SHARED / "datasets" / "oxi_diel_db")
    results: dict = {"cv": args.cv, "tasks": {}, "speed": None, "cache": {}}
    run_info = this_run()
    if args.merge:
        import json

        previous = json.loads((RESULTS / "ml_dielectric.json").read_text())
        results["tasks"] = {k: with_run(v, previous) for k, v in previous["tasks"].items()
                            if k.split("/")[2] not in args.models}
        results["speed"] = previous["speed"]
        results["speed_from"] = previous.get("speed_from", previous["machine"])
        if "pretraining" in previous:
            results["pretraining"] = previous["pretraining"]
    plots = RESULTS / "ml_dielectric_plots"
    plots.mkdir(parents=True, exist_ok=True)
    weights = None
    if "lgbm-attn" in args.models:
        weights = pretrained_weights(tmp, args.pretrain_epochs)
        results["pretraining"] = weights["meta"]

    def build(name: str):
        return make_model(name, pretrained=weights if name == "lgbm-attn" else None)

    for feature_set in args.feature_sets:
        start = time.perf_counter()
        data = load_dataset(db, "eps_electronic", feature_set, subset="paper")
        first = time.perf_counter() - start
        start = time.perf_counter()
        cached_features(db, data.material_ids, feature_set)
        results["cache"][feature_set] = {"first_seconds": first, "cached_seconds": time.perf_counter() - start}
        for prop in ("eps_electronic", "eps_ionic"):
            plain = load_dataset(db, prop, feature_set, subset="paper")
            for name in args.models:
                model = build(name)
                if feature_set == "composition" and any(EXTRA_BLOCKS[b].needs_structure for b in model.extra_blocks):
                    continue  # lgbm-chgnet reads structures: it has no composition-only row
                inputs = model_feature_set(model, feature_set)  # lgbm-lin: the set plus ion fractions
                start = time.perf_counter()
                data = plain if inputs == feature_set else load_dataset(db, prop, inputs, subset="paper")
                if inputs not in results["cache"]:  # the model's extra blocks: what featurizing them first cost
                    first = time.perf_counter() - start
                    start = time.perf_counter()
                    cached_features(db, data.material_ids, inputs)
                    results["cache"][inputs] = {"first_seconds": first, "cached_seconds": time.perf_counter() - start}
                start = time.perf_counter()
                res = evaluate(model, data.X, data.y, data.groups, (k, r))
                key = f"{prop}/{feature_set}/{name}"
                entry = {key2: res[key2] for key2 in ("cv", "holdout", "grouped")}
                entry.update(n=res["n"], seconds=time.perf_counter() - start, paper_r2=PAPER[(prop, feature_set)],
                             stretch_r2=STRETCH[(prop, feature_set)], run=run_info)
                if name == args.models[-1]:
                    parity(data.y, res["_oof_mean"], res["_oof_std"], plots / f"parity_{prop}_{feature_set}.png",
                           f"log10 {prop}", res["cv"]["r2_mean"])
                    if feature_set == "structure":
                        from sklearn.model_selection import train_test_split

                        tr, te = train_test_split(np.arange(len(data.y)), test_size=0.2, random_state=0)
                        fitted = build(name).fit(data.X[tr], data.y[tr])
                        entry["permutation_importance"] = grouped_permutation(fitted, data.X[te], data.y[te],
                                                                              data.feature_names)
                        if (share := linear_share(fitted)) is not None:
                            entry["linear_share_of_gain"] = share
                        order = np.argsort(fitted.feature_importances_)[::-1][:10]
                        entry["top_impurity"] = {data.feature_names[i]: float(fitted.feature_importances_[i])
                                                 for i in order}
                        plot_importance(data.feature_names, fitted.feature_importances_,
                                        plots / f"importance_{prop}.png", f"{name}: {prop} (structure set)")
                results["tasks"][key] = entry
                print(key, round(res["cv"]["r2_mean"], 3), round(entry["seconds"]), flush=True)
    if not args.merge:
        structures, formulas = paper_materials(db)
        results["speed"] = speed(structures, formulas, args.speed_sample)
    order = list(MODELS)
    results["tasks"] = dict(sorted(results["tasks"].items(), key=lambda kv: (
        ("composition", "structure").index(kv[0].split("/")[1]), kv[0].split("/")[0], order.index(kv[0].split("/")[2]))))
    models = sorted({key.split("/")[2] for key in results["tasks"]}, key=order.index)
    write_results("ml_dielectric", results, markdown(results, models))


# Rows written before each row recorded its own run carried the file header's command, which a later --speed-only
# run overwrote. What git history says about them (the commit that brought the rows in):
RECOVERED_RUNS = {
    "python benchmarks/ml_dielectric.py --speed-only": {
        "commit": "554162d", "date": "2026-11-29",
        "command": "python benchmarks/ml_dielectric.py --models rf lgbm lgbm-cal blend --cv 5x3",
        "note": "recovered from git: the 5x3 CV run committed in 554162d, whose header the --speed-only run committed "
                "with it overwrote; the command is assumed to be the one the previous full run recorded at 4c78aab"},
    "python benchmarks/ml_dielectric.py --models lgbm-lin --merge --cv 5x3": {
        "commit": "83cfea5", "date": "2026-11-29T16:51:10+00:00",
        "command": "python benchmarks/ml_dielectric.py --models lgbm-lin --merge --cv 5x3"},
    "python benchmarks/ml_dielectric.py --models lgbm-chgnet --merge --cv 5x3": {
        "commit": "e68c9cf", "date": "2026-11-30T03:12:44+00:00",
        "command": "python benchmarks/ml_dielectric.py --models lgbm-chgnet --merge --cv 5x3"},
}


def with_run(entry: dict, previous: dict) -> dict:
    """A stored row with the run that produced it: its own record, else what git history recovered for the
    command it was labelled with, else the stored file's header (the run that last computed model rows)."""
    if "run" in entry:
        return entry
    label = entry.get("from")
    run = RECOVERED_RUNS.get(label) if label else None
    if run is None:
        header = previous.get("model_results_from") or previous["machine"]
        run = {key: header[key] for key in ("commit", "command", "date")}
    return {**{k: v for k, v in entry.items() if k != "from"}, "run": run}


def render_again() -> None:
    """The stored results written again (nothing computed), every row with its run."""
    import json

    previous = json.loads((RESULTS / "ml_dielectric.json").read_text())
    results = {k: v for k, v in previous.items() if k != "machine"}
    results["tasks"] = {k: with_run(v, previous) for k, v in previous["tasks"].items()}
    models = sorted({key.split("/")[2] for key in results["tasks"]}, key=list(MODELS).index)
    write_results("ml_dielectric", results, markdown(results, models))


def pretrained_weights(tmp: Path, epochs: int) -> dict:
    """lgbm-attn's starting weights, made the way a user makes them: the matbench table imported into a
    database of its own, then pretrained on."""
    from tansaku.models.attention import pretrain
    from tansaku.models.dataset import formula_values
    from tansaku.sources.csv_table import import_csv

    db = open_database(tmp / "e_form.db")
    start = time.perf_counter()
    import_csv(db, SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz", "e_form", "eV/atom")
    imported = time.perf_counter() - start
    rows = formula_values(db, "e_form")
    weights = pretrain([f for f, _ in rows], [v for _, v in rows], "e_form", epochs)
    weights["meta"]["import_seconds"] = round(imported, 1)
    print("pretrained", weights["meta"], flush=True)
    return weights


def paper_materials(db) -> tuple[list, list[str]]:
    """Structures and formulas of the paper's 1,266 oxides, the input of the speed comparison."""
    from tansaku.store.tables import Material, Subset

    with db.session() as session:
        mats = session.query(Material).join(Subset, Subset.material_id == Material.id).filter(
            Subset.name == "paper").all()
        return [m.structure() for m in mats], [m.formula for m in mats]


def rerun_speed(args) -> None:
    """Replace only the speed section of benchmarks/results/ml_dielectric.json (the CV part takes an hour)."""
    import json

    previous = json.loads((RESULTS / "ml_dielectric.json").read_text())
    tmp = Path(tempfile.mkdtemp())
    db = open_database(tmp / "ml.db")
    import_oxi_diel_db(db, SHARED / "datasets" / "oxi_diel_db")
    structures, formulas = paper_materials(db)
    results = {k: v for k, v in previous.items() if k != "machine"}
    results["speed"] = speed(structures, formulas, args.speed_sample)
    results["model_results_from"] = previous.get("model_results_from", previous["machine"])  # the CV run
    models = sorted({key.split("/")[2] for key in results["tasks"]}, key=list(MODELS).index)
    write_results("ml_dielectric", results, markdown(results, models))


def markdown(results: dict, models: list[str]) -> str:
    lines = [f"# Dielectric prediction on the paper's oxides (repeated {results['cv']} CV, log10 units)", "",
             "| target | descriptors | model | CV R² (mean ± std) | paper | stretch | holdout R² | grouped R² | "
             "MAE | 68 % / 95 % coverage | run |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    runs, legend = runs_legend([e.get("run") or {} for e in results["tasks"].values()])
    for key, e in results["tasks"].items():
        run_no = run_number(runs, e.get("run") or {})
        prop, fs, name = key.split("/")
        cv = e["cv"]
        mark = "✅" if cv["r2_mean"] > e["paper_r2"] else "❌"
        lines.append(f"| {prop} | {fs} | {name} | {cv['r2_mean']:.3f} ± {cv['r2_std']:.3f} {mark} | {e['paper_r2']} "
                     f"| {e['stretch_r2']} | {e['holdout']['r2_mean']:.3f} | {e['grouped']['r2_mean']:.3f} "
                     f"| {cv['mae_mean']:.3f} | {cv['coverage_68_mean']:.2f} / {cv['coverage_95_mean']:.2f} | "
                     f"{run_no} |")
    lines += ["", *legend]
    sp = results["speed"]
    if "speed_from" in results:
        origin = results["speed_from"]
        lines += ["", f"(Speed section from `{origin['command']}` on {origin['date']}, commit {origin['commit']}; model "
                  "rows were added with --merge.)"]
    if "model_results_from" in results:
        origin = results["model_results_from"]
        lines += ["", f"(Model rows from `{origin['command']}` on {origin['date']}, commit {origin['commit']}; the "
                  "speed section below was measured again with --speed-only.)"]
    lines += ["", "## Descriptor speed (seconds per 1,000; matminer featurizers of equal definition, same run)", "",
              "| set | tansaku | matminer | ratio | target |", "| --- | --- | --- | --- | --- |",
              f"| composition (whole set: element statistics, stoichiometry, oxidation states, ionic character) | "
              f"{sp['composition']['ours_s_per_1000']:.2f} | {sp['composition']['matminer_s_per_1000']:.2f}"
              f" | {sp['composition']['ratio']:.1f}× | ≥ 20× |",
              *([f"| composition without oxidation states (matminer: ElementProperty, Stoichiometry) | "
                 f"{sp['composition_without_oxidation']['ours_s_per_1000']:.2f} | "
                 f"{sp['composition_without_oxidation']['matminer_s_per_1000']:.2f} | "
                 f"{sp['composition_without_oxidation']['ratio']:.1f}× | |"]
                if "composition_without_oxidation" in sp else []),
              f"| structure | {sp['structure']['ours_s_per_1000']:.2f} | {sp['structure']['matminer_s_per_1000']:.2f}"
              f" | {sp['structure']['ratio']:.1f}× | ≥ 5× |", "",
              *([f"lgbm-attn's network was pretrained on {results['pretraining']['n']:,} formation energies "
                 f"({results['pretraining']['epochs']} epochs, {results['pretraining']['seconds']:.0f} s; import "
                 f"{results['pretraining']['import_seconds']:.0f} s).", ""] if "pretraining" in results else []),
              "Feature cache: " + ", ".join(f"{k}: first {v['first_seconds']:.1f} s, cached {v['cached_seconds']:.2f} s"
                                            for k, v in results["cache"].items()), "", "## Importance (structure set; "
              "grouped permutation: increase of held-out MSE when a descriptor family is shuffled)", ""]
    for key, e in results["tasks"].items():
        if "permutation_importance" in e:
            top = list(e["permutation_importance"].items())[:6]
            lines.append(f"- {key.split('/')[0]} ({key.split('/')[2]}): " + ", ".join(f"{g} {v:.4f}" for g, v in top))
            lines.append(f"  - top single descriptors: {', '.join(list(e['top_impurity'])[:6])}")
            if "linear_share_of_gain" in e:
                lines.append(f"  - the stacked ridge prediction takes {e['linear_share_of_gain']:.0%} of LightGBM's "
                             "gain")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
