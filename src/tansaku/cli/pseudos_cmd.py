"""`tansaku pseudos ...`: get and inspect pseudopotential families."""

from __future__ import annotations

from pathlib import Path

import typer

from tansaku.cli.common import console
from tansaku.dft.pseudo_fetch import FAMILIES, fetch_family
from tansaku.dft.pseudos import load_family

app = typer.Typer(help="Pseudopotential families: download official ones, list what a directory holds.")


@app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help=f"Family: {', '.join(FAMILIES)} (or any name with --url)."),
    url: str = typer.Option(None, help="Download from this URL instead of the official one."),
    sha256: str = typer.Option(None, help="Expected SHA-256 of the archive."),
) -> None:
    """Download a family once into ~/.cache/tansaku/pseudos/NAME and print the directory for --pseudo-dir."""
    family = fetch_family(name, url, sha256)
    console.print(f"{name}: {len(family.files)} elements in {family.directory}")
    console.print(f"use it with: --pseudo-dir {family.directory}  (or export TANSAKU_PSEUDO_DIR={family.directory})")


@app.command("list")
def list_family(directory: Path = typer.Argument(None, help="Family directory (default $TANSAKU_PSEUDO_DIR).")):
    """Elements covered by a family and the file used for each."""
    family = load_family(directory)
    for element, file in sorted(family.files.items()):
        console.print(f"{element:>3}  {file}")
