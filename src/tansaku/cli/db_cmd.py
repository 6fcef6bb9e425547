"""`tansaku db ...`: look into the database and export it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from tansaku import TansakuError
from tansaku.chemistry.structures import STRUCTURE_FILE_SUFFIXES, write_structure_file
from tansaku.cli.common import console, database, err_console, progress_bar
from tansaku.files import table_format, write_rows
from tansaku.store.deletion import carry_out, plan_deletion
from tansaku.store.queries import (
    DEFINITIONS,
    export_rows,
    export_table,
    find_materials,
    material_details,
    selected_materials,
    stats,
)

app = typer.Typer(help="Inspect and export the materials database.")


@app.command("stats")
def db_stats(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Counts of materials by source, properties by name, subset members and number of elements."""
    db = database(create=False)
    with db.session() as session:
        data = stats(session)
    if json_out:
        console.print_json(json.dumps(data))
        return
    console.print(f"[bold]{data['materials']}[/] materials ({data['with_structure']} with structures, "
                  f"{data['linked_duplicates']} linked duplicates)")
    for key, title in (("sources", "source"), ("properties", "property"), ("subsets", "subset"),
                       ("nelements", "elements"), ("calculations", "calculation status")):
        if data[key]:
            table = Table(title=f"by {title}")
            table.add_column(title)
            table.add_column("count", justify="right")
            for name, count in data[key].items():
                table.add_row(name, str(count))
            console.print(table)


@app.command("show")
def db_show(
    material: str = typer.Argument(..., help="Material id, or a reduced formula such as MgO (every material "
                                   "with that formula is listed when there are several)."),
    json_out: bool = typer.Option(False, "--json", help="Print everything, structure included, as JSON."),
) -> None:
    """One material: identity, properties with their methods and what each scalar means, calculations."""
    db = database(create=False)
    with db.session() as session:
        ids = find_materials(session, material)
        if len(ids) > 1:
            listed = [material_details(session, i) for i in ids]
        else:
            data = material_details(session, ids[0])
    if len(ids) > 1:
        if json_out:
            console.print_json(json.dumps(listed))
            return
        table = Table("id", "formula", "source", "source id", "sites", "space group",
                      title=f"{len(ids)} materials with formula {material}")
        for d in listed:
            table.add_row(str(d["id"]), d["reduced_formula"], d["source"], str(d["source_id"]), str(d["nsites"] or ""),
                          d["spacegroup"] or "")
        console.print(table)
        return
    if json_out:
        console.print_json(json.dumps(data))
        return
    console.print(f"[bold]{data['reduced_formula']}[/] (id {data['id']}, {data['source']} {data['source_id']}, "
                  f"{data['nsites']} sites, {data['spacegroup']})")
    if data["duplicate_of"]:
        console.print(f"same structure as material {data['duplicate_of']}")
    table = Table("property", "value", "unit", "method")
    for p in data["properties"]:
        table.add_row(p["name"], "" if p["value"] is None else f"{p['value']:.4g}", p["unit"] or "", p["method"])
    console.print(table)
    for name in dict.fromkeys(p["name"] for p in data["properties"]):
        if name in DEFINITIONS:
            console.print(f"  {name}: {DEFINITIONS[name]}")


@app.command("export")
def db_export(
    out: str = typer.Argument(..., help="OUT.csv or OUT.json: one row per material, properties as columns; '-' "
                              "writes to standard output (CSV unless --format json)."),
    property_names: list[str] = typer.Option(None, "--property", help="Only these properties (repeatable)."),
    structures: str = typer.Option(None, help="Add a structure column as 'cif' or 'json'."),
    subset: str = typer.Option(None, help="Only members of this subset, e.g. 'paper'."),
    query: str = typer.Option(None, help="Only the materials this selects ('source=file;max_sites=10', the syntax of "
                              "'tansaku run --query')."),
    fmt: str = typer.Option(None, "--format", help="csv or json, whatever OUT's suffix says."),
    include_predictions: bool = typer.Option(False, "--include-predictions", help="Fill cells no measured value "
                                             "fills with stored ML predictions (their method column says "
                                             "ml:<model id>). Without it only imported and computed values go out."),
) -> None:
    """Export materials and property values, each with a <property>_method column saying how it was obtained.

    A file is written whole or not at all (a killed export leaves the previous one).

    Examples: tansaku db export oxides.csv --property eps_electronic --property eps_ionic --subset paper
              tansaku db export - --query source=file --property band_gap | column -s, -t
    """
    db = database(create=False)
    with db.session() as session:
        if out == "-":
            rows = export_rows(session, property_names or None, structures, subset, include_predictions, query)
            write_rows(rows, sys.stdout, table_format(Path("-"), fmt or "csv"), keep_whole=("structure",))
            err_console.print(f"wrote {len(rows)} row{'s' * (len(rows) != 1)}")
            return
        n = export_table(session, Path(out), property_names or None, structures, subset, include_predictions,
                         query, fmt)
    console.print(f"wrote {n} row{'s' * (n != 1)} to {out}")


@app.command("structures")
def db_structures(
    folder: Path = typer.Argument(..., help="Folder to write the files into (made if missing)."),
    fmt: str = typer.Option("cif", "--format", help="cif, poscar (written as .vasp, which VASP and tansaku read) "
                            "or json (pymatgen's)."),
    subset: str = typer.Option(None, help="Only members of this subset, e.g. 'next' (what al suggest queued)."),
    query: str = typer.Option(None, help="Only the materials this selects ('source=generated;max_sites=10', the "
                              "syntax of 'tansaku run --query')."),
) -> None:
    """Write each selected material's structure to its own file, named <id>_<formula>, to compute it elsewhere
    (VASP, another code) or to look at it. Composition-only materials have none and are left out.

    Example: tansaku db structures next/ --subset next --format poscar
    """
    if fmt not in STRUCTURE_FILE_SUFFIXES:
        raise TansakuError(f"--format takes {', '.join(STRUCTURE_FILE_SUFFIXES)}, not {fmt!r}")
    db = database(create=False)
    with db.session() as session:
        materials = selected_materials(session, subset, query, structures_only=True)
        for material in progress_bar("structures")(materials):
            write_structure_file(material.structure(), folder, f"{material.id}_{material.reduced_formula}", fmt)
    console.print(f"wrote {len(materials)} structure file{'s' * (len(materials) != 1)} to {folder}")


@app.command("delete")
def db_delete(
    material_ids: list[int] = typer.Argument(None, help="Material ids to delete, with everything stored about them."),
    query: str = typer.Option(None, help="Delete the materials this selects ('source=file', 'subset=gen', the "
                              "syntax of 'tansaku run --query')."),
    subset: str = typer.Option(None, help="Remove this subset (its membership; the materials stay)."),
    method: str = typer.Option(None, help="Delete the property values stored with this method, e.g. a model's "
                               "predictions 'ml:<model id>' (only of the selected materials, if any are selected)."),
    property_name: str = typer.Option(None, "--property", help="With --method: only this property."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    force: bool = typer.Option(False, "--force", help="Also delete measured data that calculations or campaigns "
                               "refer to (refused without it, so such data is only removed when asked twice)."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Delete materials, one method's property values, or a subset; in one transaction.

    Examples: tansaku db delete --method ml:et-eps_electronic-1a2b3c4d --dry-run
              tansaku db delete 17 18 --force
              tansaku db delete --query source=generated
    """
    db = database(create=False)
    with db.session() as session:
        plan = plan_deletion(session, material_ids or None, query, subset, method, property_name)
        counts = plan.counts() if dry_run else carry_out(session, plan, force)
    if json_out:
        console.print_json(json.dumps({**counts, "dry_run": dry_run}))
        return
    verb = "would delete" if dry_run else "deleted"
    parts = [f"{counts['materials']} material(s)", f"{counts['properties']} property value(s)"]
    if counts["subset"]:
        parts.append(f"subset {counts['subset']!r} ({counts['subset_members']} members)")
    console.print(f"{verb} {', '.join(parts)}")
    if dry_run and plan.referenced:
        console.print(f"{len(plan.referenced)} of them are referenced by calculations or campaigns: deleting them "
                      "needs --force", soft_wrap=True)
