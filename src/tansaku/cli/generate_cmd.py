"""`tansaku generate substitute`: hypothetical structures by element substitution on prototypes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tansaku.chemistry.structures import write_structure_file
from tansaku.cli.common import STRUCTURE_FILES, console, database, err_console, finite, progress_bar
from tansaku.sources.generate import Limits, load_prototypes, parse_site_elements, store_candidates, substitute

app = typer.Typer(help="Make hypothetical candidate materials that no database holds yet.")


@app.command("substitute")
def substitute_cmd(
    prototypes: list[str] = typer.Option(..., "--prototype", help="Prototype: material id, source id (e.g. "
                                         f"mp-5020) or structure file ({STRUCTURE_FILES}). Repeatable."),
    site_elements: str = typer.Option(..., help="What goes on each site: 'A=Ca,Sr,Ba;B=Ti,Zr,Hf,Sn'. A, B, C... "
                                      "are the prototype's cations from largest to smallest ionic radius; an "
                                      "element symbol of the prototype (e.g. 'Ti=Zr,Hf') names its sites."),
    anion: str = typer.Option(None, help="Put this element on the anion sites (default: keep the prototype's)."),
    tolerance: tuple[float, float] = typer.Option((0.80, 1.10), callback=finite, help="Allowed Goldschmidt tolerance "
                                                  "factor for perovskite (ABX3) prototypes."),
    radius_ratio_slack: float = typer.Option(0.8, callback=finite, help="Other prototypes: r_cation/r_anion must reach "
                                             "this fraction of Pauling's lower bound for the site's coordination."),
    max_sites: int = typer.Option(40, help="Refuse cells with more sites than this."),
    relax: bool = typer.Option(False, "--relax", help="Relax each candidate with the CHGNet potential, in its "
                               "prototype's space group, before storing it (seconds a cell; needs the mlip extra). "
                               "Do it before lgbm-chgnet "
                               "predicts: its descriptors fail on unrelaxed cells."),
    subset: str = typer.Option(None, help="Also add the stored candidates to this named subset."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be generated; store nothing."),
    write_dir: Path = typer.Option(None, help="Also write each candidate as a CIF file into this folder."),
    json_out: Path = typer.Option(None, "--json", help="Write generated and refused candidates as JSON."),
) -> None:
    """Substitute elements on prototype structures and store the candidates
    that pass the filters.

    Filters: charge neutrality with common oxidation states; for ABX3
    perovskites the tolerance factor and the octahedral factor
    r_B/r_X ≥ 0.414, for other prototypes Pauling's radius ratio (with a
    slack); no structure already in the database (structure matching, not
    formula); at most --max-sites sites. The lattice is scaled by the ratio
    of cation-anion bond lengths (Shannon radii) as a starting guess; --relax
    then relaxes positions and cell with the CHGNet potential, keeping the
    space group (recorded with the candidate). Stored materials have source 'generated' and record
    their prototype and substitution.

    Example: tansaku generate substitute --prototype mp-5020
             --site-elements 'A=Ca,Sr,Ba;B=Ti,Zr,Hf,Sn' --relax
    """
    db = database()
    limits = Limits(tolerance_min=tolerance[0], tolerance_max=tolerance[1],
                    radius_ratio_slack=radius_ratio_slack, max_sites=max_sites)
    site_map = parse_site_elements(site_elements)
    protos, refused = load_prototypes(db, prototypes)
    candidates, refused_here = substitute(protos, site_map, anion, limits)
    refused += refused_here
    if relax:
        from tansaku.sources.relax import relax_candidates

        refused += relax_candidates(candidates, progress_bar("relax with CHGNet"))
    if not dry_run:
        refused += store_candidates(db, candidates, protos, subset)
        candidates = [c for c in candidates if c.material_id is not None]
    table = Table("formula", "prototype", "substitution", "lattice ×", "t", *(["ΔV relaxed"] if relax else []),
                  "material id",
                  title=f"{len(candidates)} candidates" + (" (dry run)" if dry_run else ""))
    for c in candidates:
        subs = ", ".join(f"{a}→{b}" for a, b in c.substitution.items() if a != b)
        mid = "" if c.material_id is None else f"{c.material_id}" + (" (existing)" if c.existing else "")
        table.add_row(c.formula, c.prototype, subs, f"{c.lattice_scale:.3f}",
                      f"{c.checks['tolerance_factor']:.3f}" if "tolerance_factor" in c.checks else "",
                      *([_relaxed_cell(c.relaxation)] if relax else []), mid)
    console.print(table)
    for r in refused:
        err_console.print(f"[yellow]refused[/] {r.formula} ({r.prototype}): {r.reason}", soft_wrap=True)
    if not candidates:  # every substitution or prototype was refused, each with its reason above: nothing done
        raise typer.Exit(2)
    if write_dir:
        for c in candidates:
            write_structure_file(c.structure, write_dir, f"{c.formula}_{c.prototype}")
    if json_out:
        json_out.write_text(json.dumps({
            "generated": [{"formula": c.formula, "prototype": c.prototype, "substitution": c.substitution,
                           "material_id": c.material_id, "lattice_scale": c.lattice_scale, **c.checks,
                           **(c.relaxation or {})}
                          for c in candidates],
            "refused": [r.__dict__ for r in refused]}, indent=1))


def _relaxed_cell(relaxation: dict | None) -> str:
    if not relaxation:
        return ""
    flag = "" if relaxation["relax_converged"] else f" (not converged: {relaxation['relax_max_force']:.2f} eV/Å)"
    return f"{relaxation['relax_volume_change']:+.1%}{flag}"


@app.command("chemsys")
def chemsys_cmd(
    elements: str = typer.Argument(..., help="Elements of the chemical system, e.g. Ca-Ti-O or Ca,Ti,O."),
    max_atoms: int = typer.Option(10, help="At most this many atoms per formula unit."),
    subsystems: bool = typer.Option(False, help="Also compositions that leave some elements out."),
    subset: str = typer.Option(None, help="Also add the stored compositions to this named subset."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the compositions; store nothing."),
) -> None:
    """All charge-balanced compositions of a chemical system, for composition-only screening.

    Charge balance uses each element's common oxidation states; compositions whose reduced formula is already
    in the database are left out. They are stored without structure (source 'generated'): models on
    composition descriptors rank them (`tansaku al suggest`, campaigns with a dataset oracle), DFT needs a
    structure (see `generate substitute`).

    Example: tansaku generate chemsys Sr-Ti-O --max-atoms 12 --subset sto
    """
    import re

    from tansaku.sources.generate import chemsys_compositions, store_compositions

    symbols = [s for s in re.split(r"[-,\s]+", elements) if s]
    compositions = chemsys_compositions(symbols, max_atoms, subsystems)
    refused = []
    if not dry_run:
        _, refused = store_compositions(database(), compositions, subset)
    skipped = {r.formula for r in refused}
    kept = [c.reduced_formula for c in compositions if c.reduced_formula not in skipped]
    console.print(f"{len(kept)} compositions" + (" (dry run)" if dry_run else " stored") + ": " + ", ".join(kept))
    for r in refused:
        err_console.print(f"[yellow]not stored[/] {r.formula}: {r.reason}", soft_wrap=True)
