"""`make demo`: the system at small scale in a few minutes, from data the user points at (or downloads).

1. import the oxide dielectric database; 2. train a model of ε∞ with uncertainty and look at its errors;
3. predict ε∞ for a few compositions; 4. compute MgO with Quantum ESPRESSO (the 'test' preset) and store it;
5. write demo/report.md with the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from pymatgen.core import Lattice, Structure
from rich.console import Console

from tansaku.cli.common import progress_bar
from tansaku.dft.pseudos import load_family
from tansaku.dft.settings import preset
from tansaku.features.sets import raw_features
from tansaku.models.dataset import load_dataset
from tansaku.models.evaluation import evaluate
from tansaku.models.learners import make_model
from tansaku.plots.figures import importance, parity
from tansaku.sources.oxi_diel_db import DEFAULT_URL, import_oxi_diel_db
from tansaku.sources.structures import FILE_SOURCE
from tansaku.store import open_database
from tansaku.store.materials import ImportReport, add_structure_material
from tansaku.store.queries import stats
from tansaku.workflows.dielectric import RunContext, run_dielectric
from tansaku.workflows.executor import LocalExecutor, QECommands

console = Console()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"),
                        help="folder with datasets/oxi_diel_db and pseudos/ (else the official archive is downloaded)")
    parser.add_argument("--pseudo-dir", type=Path, default=None, help="pseudopotential family for the DFT step")
    parser.add_argument("--out", type=Path, default=Path("demo"), help="where the demo writes its files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
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

    console.rule("3. predict ε∞ of compositions the database does not hold")
    known = set(data.groups)
    candidates = ["CaHfO3", "SrSnO3", "KNbO3", "LiTaO3", "BaSnO3", "ZnSnO3", "BaGeO3", "MgSnO3", "SrGeO3",
                  "KSbO3", "Sr2SnO4", "Ba2HfO4", "LiSbO3", "CaGeO3", "Mg2GeO4"]
    formulas = [f for f in candidates if f not in known][:5]
    mean, std = model.predict_dist(raw_features(formulas, "composition"))
    report += ["3. Predictions (ε∞ with the ±1σ range):", "", "| formula | ε∞ | range |", "| --- | --- | --- |"]
    for f, m, s in zip(formulas, mean, std, strict=True):
        console.print(f"{f:>8}: ε∞ ≈ {10**m:.2f}  ({10 ** (m - s):.2f} – {10 ** (m + s):.2f})")
        report.append(f"| {f} | {10**m:.2f} | {10 ** (m - s):.2f} – {10 ** (m + s):.2f} |")
    report.append("")

    console.rule("4. compute MgO with Quantum ESPRESSO (test preset)")
    pseudo_dir = args.pseudo_dir or args.shared / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4"
    if shutil.which("pw.x") and pseudo_dir.is_dir():
        mgo = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        with db.session() as session:
            material, _ = add_structure_material(session, mgo, FILE_SOURCE, "demo:MgO", ImportReport())
        ctx = RunContext(db, preset("test"), "test", load_family(pseudo_dir), LocalExecutor(),
                         QECommands(mpi_procs=2), (args.out / "runs").resolve())
        res = run_dielectric(ctx, material.id, lambda step: console.print(f"  MgO: {step}"))
        console.print(json.dumps(res.as_dict(), indent=1))
        report += [f"4. MgO with pw.x/ph.x (test preset): status {res.status}, gap {res.band_gap:.2f} eV, "
                   f"ε∞ {res.eps_electronic:.2f}, ε_ion {res.eps_ionic:.2f} (reference database: 3.16 and 6.81). "
                   f"Inputs, outputs and state files are in `{ctx.run_root}`.", ""]
    else:
        console.print("pw.x or the pseudopotentials are missing: DFT step skipped")
        report += ["4. DFT step skipped: pw.x or pseudopotentials missing.", ""]
    (args.out / "report.md").write_text("\n".join(report))
    console.print(f"report written to {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
