"""`tansaku import ...`: bring materials and properties into the database."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import typer

from tansaku.cli.common import (
    STRUCTURE_FILES,
    console,
    database,
    err_console,
    finish_batch,
    finite,
    print_report,
    progress_bar,
)
from tansaku.sources.csv_table import import_csv
from tansaku.sources.oxi_diel_db import DEFAULT_URL, import_oxi_diel_db
from tansaku.sources.structures import import_structure_files

app = typer.Typer(help="Import materials: the oxide dielectric database, CSV tables, structure files, OPTIMADE.")


@app.command("oxi-diel-db")
def oxi_diel_db(
    location: str = typer.Argument(
        None, help="Directory with data/*.json, a zip of the repository, or its URL. "
        "Default: the official archive, downloaded once into ~/.cache/tansaku."
    ),
    subset_ids: Path = typer.Option(
        None, help="File of Materials Project ids of the paper's subset (default: paper_subset_ids.txt "
        "beside data/ when present)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
) -> None:
    """Import the published oxide dielectric database (Takahashi et al., PRM 4, 103801 (2020)).

    Each material gets its relaxed structure, band gap, electronic and ionic dielectric tensors (and their
    eigenvalue averages), Born charges and Gamma phonon frequencies. Importing again adds nothing.

    Example: tansaku import oxi-diel-db ../shared/datasets/oxi_diel_db
    """
    db = database()
    report = import_oxi_diel_db(db, location or DEFAULT_URL, subset_ids, progress_bar("oxi_diel_db"))
    _finish(report, "oxi_diel_db", json_out)


@app.command("csv")
def csv_table(
    file: Path = typer.Argument(..., help="CSV (or .csv.gz) with a composition column and a value column."),
    property_name: str = typer.Option(..., "--property", help="Name to store the values under, e.g. e_form."),
    unit: str = typer.Option(None, help="Unit of the values, e.g. eV/atom."),
    column: str = typer.Option(None, help="Value column (default: the only numeric column besides the formula; "
                               "with several, e.g. an id and a value, the import stops and lists them)."),
    json_out: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
) -> None:
    """Import a composition,value table; each row becomes a composition-only material.

    Example: tansaku import csv ../shared/datasets/matbench/mp_e_form.csv.gz --property e_form --unit eV/atom
    """
    report = import_csv(database(), file, property_name, unit, column, progress_bar(file.name))
    _finish(report, file.name, json_out)


@app.command("structures")
def structures(
    files: list[Path] = typer.Argument(..., help=f"Structure files: {STRUCTURE_FILES}. A pw.x input needs ibrav = 0; "
                                       "an output gives its last structure (a relaxation's result)."),
    allow_disorder: bool = typer.Option(False, help="Store disordered/partially occupied structures too."),
    species: str = typer.Option(None, help="Elements of a VASP 4 POSCAR that has no element line (and no POTCAR "
                                "beside it), in the order of its counts, e.g. Mg,O. Without it such a file is "
                                "refused, never read as H, He, ..."),
    subset: str = typer.Option(None, help="Also put the imported materials in this named subset, to compute or "
                               "export them together: tansaku run dielectric --query subset=NAME."),
    json_out: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
) -> None:
    """Import structure files, any mix of formats. A structure identical to a stored one is linked to it.

    Each material keeps its file's path as source id (path#block for one of a CIF's data blocks, path#N for
    the N-th structure of a JSON list), so importing the same files again adds nothing.

    Example: tansaku import structures MgO.cif POSCAR BaTiO3.json relax.out
    """
    names = [s.strip() for s in species.split(",") if s.strip()] if species else None
    report = import_structure_files(database(), files, allow_disorder, progress_bar("structures"), names, subset)
    _finish(report, "structures", json_out)


@app.command("optimade")
def optimade(
    url: str = typer.Argument(..., help="The provider's OPTIMADE base URL, with or without /v1, e.g. "
                              "https://optimade.materialsproject.org"),
    filter_text: str = typer.Option("", "--filter", help='An OPTIMADE filter, e.g. \'elements HAS ALL "Ti","O" AND '
                                    'nelements=2\'. Default: everything the provider has (mind --max).'),
    max_entries: int = typer.Option(None, "--max", min=1, help="Stop after this many entries."),
    subset: str = typer.Option(None, help="Also put the imported materials in this named subset."),
    delay: float = typer.Option(0.5, min=0.0, callback=finite, help="Seconds between requests (the provider's "
                                "request_delay wins if longer): be polite to public servers."),
    restart: bool = typer.Option(False, help="Start from the first page even if an earlier import of the same "
                                 "URL and filter stopped part-way (it resumes by default)."),
    json_out: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
) -> None:
    """Import structures from any OPTIMADE database (Materials Project, OQMD, Alexandria, JARVIS, COD, or
    another tansaku server), with the properties it offers.

    Band gaps and formation energies are mapped to band_gap and e_form (the table is in the README); other
    provider fields stay in each material's extra data. Pages are stored as they arrive: an interrupted import
    resumes at its page when run again, and entries already stored are not added twice. Disordered or
    non-periodic entries are skipped with their reason.

    Example: tansaku import optimade https://optimade.materialsproject.org --filter 'elements HAS ALL "Ba","Ti","O"
    AND nelements=3' --max 50 --subset bto
    """
    from tansaku.interop.optimade_client import import_optimade

    db = database()
    with _page_progress(f"OPTIMADE {url}") as advance:
        report = import_optimade(db, url, filter_text, max_entries, subset, delay, restart, advance)
    _finish(report, f"OPTIMADE {url}", json_out)


@contextmanager
def _page_progress(description: str):
    """A progress bar fed by (entries so far, total or None) after each page."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _finish(report, what: str, json_out: bool) -> None:
    if json_out:
        console.print_json(json.dumps(report.as_dict()))
    else:
        print_report(report, what)
    finish_batch(report.added + report.existing, len(report.errors))
