"""`make demo`: the system at small scale in a few minutes, from data the user points at (or downloads).

1. import the oxide dielectric database; 2. train a model of ε∞ with uncertainty and look at its errors;
3. generate hypothetical perovskites and rock-salt sulfides by substitution; 4. rank them for a band gap in
2-3 eV; 5. one closed-loop round: DFT (Quantum ESPRESSO, 'test' preset) on the chosen candidate, store,
retrain; then write demo/report.md with the figures.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from tansaku import TansakuError
from tansaku.active.campaign import open_campaign, run_campaign
from tansaku.active.campaign_choice import choose
from tansaku.active.campaign_config import CampaignConfig, config_from_dict
from tansaku.active.cost import CostEstimator
from tansaku.active.oracles import DFTOracle
from tansaku.cli.common import progress_bar
from tansaku.models.dataset import load_dataset
from tansaku.models.evaluation import evaluate
from tansaku.models.learners import make_model
from tansaku.plots.figures import campaign_progress, importance, parity
from tansaku.sources.generate import load_prototypes, parse_site_elements, store_candidates, substitute
from tansaku.sources.oxi_diel_db import DEFAULT_URL, import_oxi_diel_db
from tansaku.store import open_database
from tansaku.store.queries import stats

console = Console()


WINDOW = (2.0, 3.0)
GENERATED = "demo-generated"


def demo_campaign(pseudo_dir: Path, out: Path) -> CampaignConfig:
    return config_from_dict({
        "name": "demo-gap-window", "property": "band_gap",
        "goal": {"kind": "range", "lo": WINDOW[0], "hi": WINDOW[1]},
        "acquisition": {"strategy": "range", "batch": 1}, "budget": {"runs": 1},
        "candidates": {"query": f"subset={GENERATED};max_sites=2"}, "training": {"query": "subset=paper"},
        "model": {"learner": "et", "trees": 200, "cv_folds": 5}, "oracle": {"kind": "dft"},
        "dft": {"preset": "test", "pseudo_dir": str(pseudo_dir), "mpi_procs": 2, "run_dir": str(out / "runs")}})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"),
                        help="folder with datasets/oxi_diel_db and pseudos/ (else the official archive is downloaded)")
    parser.add_argument("--pseudo-dir", type=Path, default=None, help="pseudopotential family for the DFT step")
    parser.add_argument("--out", type=Path, default=Path("demo"), help="where the demo writes its files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pseudo_dir = (args.pseudo_dir or args.shared / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4").resolve()
    report = ["# tansaku demo", ""]
    local = args.shared / "datasets" / "oxi_diel_db"
    db = open_database(args.out / "tansaku.db")

    console.rule("1. import the oxide dielectric database")
    imported = import_oxi_diel_db(db, str(local) if local.is_dir() else DEFAULT_URL,
                                  progress=progress_bar("oxi_diel_db"))
    with db.session() as session:
        summary = stats(session)
    console.print(f"{summary['materials']} materials, properties {summary['properties']}, subsets {summary['subsets']}")
    report += [f"1. Imported the oxide dielectric database: {summary['materials']} materials "
               f"({imported.added} new), {summary['subsets'].get('paper', 0)} in the paper's subset.", ""]

    console.rule("2. learn log10 ε∞ from composition (extra trees, 5-fold CV)")
    data = load_dataset(db, "eps_electronic", "composition", subset="paper", progress=progress_bar("descriptors"))
    result = evaluate(make_model("et"), data.X, data.y, data.groups, cv=(5, 1), which=("cv",))
    cv = result["cv"]
    console.print(f"R² = {cv['r2_mean']:.3f} ± {cv['r2_std']:.3f}, MAE = {cv['mae_mean']:.3f} (log10), "
                  f"68 % interval coverage {cv['coverage_68_mean']:.2f}")
    parity(data.y, result["_oof_mean"], result["_oof_std"], args.out / "parity.png", "log10 ε∞", cv["r2_mean"])
    model = make_model("et").fit(data.X, data.y)
    importance(data.feature_names, model.feature_importances_, args.out / "importance.png", "what drives ε∞")
    report += [f"2. Extra trees on composition descriptors, 5-fold CV on {len(data.y)} oxides: "
               f"R² = {cv['r2_mean']:.3f}, MAE = {cv['mae_mean']:.3f} in log10 ε∞.", "",
               "![parity](parity.png) ![importance](importance.png)", ""]

    console.rule("3. generate hypothetical candidates by substitution")
    protos, refused_protos = load_prototypes(db, ["mp-5020", "mp-1265"])  # cubic BaTiO3, rock-salt MgO
    if refused_protos:
        raise TansakuError("; ".join(r.reason for r in refused_protos))
    made, refused = substitute(protos[:1], parse_site_elements("A=Ca,Sr,Ba;B=Ti,Zr,Hf,Sn"))
    sulfides, refused_s = substitute(protos[1:], parse_site_elements("A=Ca,Sr,Ba,Zn,Cd"), anion="S")
    refused += refused_s + store_candidates(db, made + sulfides, protos, subset=GENERATED)
    stored = [c for c in made + sulfides if c.material_id is not None]
    console.print(f"{len(stored)} candidates stored: {', '.join(c.formula for c in stored)}; {len(refused)} refused")
    report += [f"3. Generated {len(stored)} hypothetical materials by substitution on cubic BaTiO3 (A = Ca, Sr, "
               "Ba; B = Ti, Zr, Hf, Sn) and on rock-salt MgO with S on the anion site (Ca, Sr, Ba, Zn, Cd): "
               f"{', '.join(c.formula for c in stored)}. Refused {len(refused)}:", ""]
    report += [f"   - {r.formula} ({r.prototype}): {r.reason}" for r in refused] + [""]

    console.rule(f"4. suggest candidates with a band gap in {WINDOW[0]}-{WINDOW[1]} eV")
    config = demo_campaign(pseudo_dir, args.out.resolve())
    campaign_id = open_campaign(db, config)
    costs = CostEstimator(db, config.dft.context(db), config.properties == ["band_gap"]) \
        if pseudo_dir.is_dir() else None
    ranking, metrics = choose(db, replace(config, candidates_query=f"subset={GENERATED}", diversity=0.0),
                              campaign_id, 1, 8, costs)
    names = {c.material_id: c.formula for c in stored}
    known = set(data.groups)
    report += [f"4. Extra trees on composition descriptors learned the band gap of {metrics['n_train']} oxides "
               f"and ranked the generated candidates by the probability that their gap lies in "
               f"{WINDOW[0]}-{WINDOW[1]} eV (target-range acquisition):", "",
               "| candidate | predicted gap (eV) | P(in window) | estimated CPU hours (test preset) | note |",
               "| --- | --- | --- | --- | --- |"]
    for c in ranking:
        cost = "" if c.cost is None else f"{c.cost:.3f}"
        console.print(f"{names[c.material_id]:>8}: gap {c.mean:.2f} ± {c.std:.2f} eV, P = {c.score:.2f}, "
                      f"~{cost} CPU-h")
        note = "composition in the training data" if names[c.material_id] in known else ""
        report.append(f"| {names[c.material_id]} | {c.mean:.2f} ± {c.std:.2f} | {c.score:.2f} | {cost} | {note} |")
    report += ["", "A composition model cannot tell polymorphs apart: for compositions it has learned (another "
               "polymorph is in the database) its trees agree and the spread is zero.", ""]

    console.rule("5. one closed-loop round: DFT (test preset) on the best small candidate, store, retrain")
    if shutil.which("pw.x") and shutil.which("ph.x") and pseudo_dir.is_dir():
        oracle = DFTOracle(config.dft.context(db), config.property)
        status = run_campaign(db, config, oracle, costs=costs, say=console.print)
        campaign_progress(status, args.out / "campaign.png")
        pick = status["rounds"][0]["picks"][0]
        final = status["final_model"]
        report += [f"5. Campaign `{config.name}` (budget: 1 DFT run among candidates of at most 2 atoms, to stay "
                   f"within minutes) chose {pick['formula']} (predicted {pick['mean']:.2f} ± {pick['std']:.2f} eV). "
                   f"pw.x (relaxation and SCF, test preset) gave: {pick['status']}, band gap "
                   f"{pick['value'] if pick['value'] is None else round(pick['value'], 3)} eV "
                   f"({'inside' if pick['hit'] else 'outside'} the window), {pick['cpu_hours']:.3f} CPU hours "
                   f"(estimated {pick['cost_estimate'] or float('nan'):.3f}). The model was retrained on "
                   f"{final.get('n_train')} materials (5-fold CV MAE {final.get('cv_mae', float('nan')):.3f} eV). "
                   "All state is in the database: `tansaku --db "
                   f"{args.out / 'tansaku.db'} campaign status {config.name}`; the runs are in `{args.out / 'runs'}`.",
                   "", "![campaign](campaign.png)", ""]
    else:
        console.print("pw.x/ph.x or the pseudopotentials are missing: DFT step skipped")
        report += ["5. DFT step skipped: pw.x/ph.x or pseudopotentials missing.", ""]
    look = f"tansaku --db {args.out / 'tansaku.db'} serve"
    report += ["## Where to look", "", f"`{look}`, then open http://127.0.0.1:8000: the materials with the provenance "
               "of every value, the campaign's picks and the same data through OPTIMADE (/optimade/v1/structures).",
               ""]
    (args.out / "report.md").write_text("\n".join(report))
    console.print(f"report written to {args.out / 'report.md'}")
    console.print(f"to browse it all: [bold]{look}[/], then open http://127.0.0.1:8000")


if __name__ == "__main__":
    main()
