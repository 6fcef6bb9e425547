"""OPTIMADE in: import structures (and the properties a provider offers) from any OPTIMADE database.

Pages are followed through `links.next`; each page is stored in one transaction together with where to go next,
so an interrupted import resumes at the page it was on, and importing again adds nothing (materials are unique by
source and entry id). Requests are spaced by `delay` seconds (or the provider's `request_delay`, if longer), and
a 429 or 5xx answer is retried with back-off.

Properties are mapped by PROPERTY_MAP (provider field → our property and unit); every other provider-specific
field (`_<prefix>_...`) is kept in the material's extra data under "optimade".
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from sqlalchemy import delete

from tansaku import TansakuError, __version__
from tansaku.chemistry.structures import check_geometry
from tansaku.numbers import is_finite_number
from tansaku.store.database import Database
from tansaku.store.materials import ImportReport, add_structure_material, set_property
from tansaku.store.tables import Meta

# provider field → (our property, unit). Documented in README ("Importing from OPTIMADE").
PROPERTY_MAP: dict[str, tuple[str, str | None]] = {
    "_mp_band_gap": ("band_gap", "eV"),
    "_mp_formation_energy_per_atom": ("e_form", "eV/atom"),
    "_oqmd_band_gap": ("band_gap", "eV"),
    "_oqmd_delta_e": ("e_form", "eV/atom"),
    "_alexandria_band_gap": ("band_gap", "eV"),
    "_alexandria_formation_energy_per_atom": ("e_form", "eV/atom"),
    "_jarvis_optb88vdw_bandgap": ("band_gap", "eV"),
    "_jarvis_formation_energy_peratom": ("e_form", "eV/atom"),
    "_aflow_egap": ("band_gap", "eV"),
    "_aflow_enthalpy_formation_atom": ("e_form", "eV/atom"),
}
OWN_PREFIX = "_tansaku_"  # another tansaku server: its properties keep their names
OWN_SKIPPED = {"_tansaku_source", "_tansaku_source_id", "_tansaku_methods"}
PAGE_LIMIT = 100
RETRIES = 4
USER_AGENT = f"tansaku/{__version__} (OPTIMADE import)"


@dataclass
class Client:
    """GET JSON with spacing between requests and back-off on 429 and 5xx."""

    delay: float = 0.5
    timeout: float = 60.0
    _last: float = 0.0

    def get(self, url: str) -> dict[str, Any]:
        for attempt in range(RETRIES):
            wait = self._last + self.delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            request = urllib.request.Request(url, headers={"Accept": "application/vnd.api+json, application/json",
                                                           "User-Agent": USER_AGENT})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the user's URL
                    body = json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if (exc.code == 429 or exc.code >= 500) and attempt < RETRIES - 1:
                    time.sleep(min(60.0, self.delay * 4**attempt + 1))
                    continue
                hint = " (no OPTIMADE structures endpoint here: give the provider's base URL)" * (exc.code == 404)
                raise TansakuError(f"{url}: HTTP {exc.code} {_detail(exc)}{hint}".replace("  ", " ")) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                if attempt < RETRIES - 1:
                    time.sleep(min(60.0, self.delay * 4**attempt + 1))
                    continue
                raise TansakuError(f"{url}: cannot reach the server ({getattr(exc, 'reason', exc)})") from None
            except json.JSONDecodeError:
                raise TansakuError(f"{url}: the answer is not JSON (is this an OPTIMADE base URL?)") from None
            delay = (body.get("meta") or {}).get("request_delay")
            if is_finite_number(delay) and delay > self.delay:
                self.delay = float(delay)
            return body
        raise TansakuError(f"{url}: no answer after {RETRIES} attempts")


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        errors = json.loads(exc.read().decode("utf-8")).get("errors") or []
        return "; ".join(str(e.get("detail") or e.get("title")) for e in errors)[:300]
    except Exception:  # noqa: BLE001 - an error page that is not JSON
        return str(exc.reason or "")


def structures_url(base: str) -> str:
    """The structures endpoint of a base URL given with or without its version (…/v1)."""
    base = base.rstrip("/")
    if base.endswith("/structures"):
        return base
    last = base.rsplit("/", 1)[-1]
    if not (last.startswith("v") and last[1:].replace(".", "").isdigit()):
        base += "/v1"
    return base + "/structures"


def entry_structure(entry: dict[str, Any]) -> Structure:
    """A pymatgen Structure from an OPTIMADE structure entry; refuses entries without a periodic, ordered cell, and
    entries whose fields have the wrong shape (a provider's bug must not stop the page)."""
    name = f"entry {entry.get('id')}"
    attributes = entry.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise TansakuError(f"{name}: 'attributes' is not an object ({str(attributes)[:40]!r})")
    lattice, positions = attributes.get("lattice_vectors"), attributes.get("cartesian_site_positions")
    at_sites, species = attributes.get("species_at_sites"), attributes.get("species")
    if not lattice or not positions or not at_sites:
        raise TansakuError(f"{name}: no lattice, positions or species (ask for a filter on full structures)")
    if attributes.get("dimension_types") not in (None, [1, 1, 1]):
        raise TansakuError(f"{name}: periodic in {attributes['dimension_types']} only; tansaku stores 3D crystals")
    if not isinstance(at_sites, list) or not all(isinstance(s, str) for s in at_sites):
        raise TansakuError(f"{name}: 'species_at_sites' is not a list of names ({str(at_sites)[:40]!r})")
    if not isinstance(positions, list) or len(positions) != len(at_sites):
        count = len(positions) if isinstance(positions, list) else "no list of"
        raise TansakuError(f"{name}: {count} positions but {len(at_sites)} species at sites")
    symbols = _species_symbols(species, name)
    names = [symbols.get(s, s) for s in at_sites]
    unknown = sorted({s for s in names if not Element.is_valid_symbol(s)})
    if unknown:
        raise TansakuError(f"{name}: unknown element symbol(s) {unknown}")
    try:
        structure = Structure(Lattice(np.asarray(lattice, dtype=float)), names, np.asarray(positions, dtype=float),
                              coords_are_cartesian=True)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for a bad cell
        raise TansakuError(f"{name}: invalid structure ({type(exc).__name__}: {exc})") from None
    check_geometry(structure, name)
    return structure


def _species_symbols(species: Any, name: str) -> dict[str, str]:
    """Species name → element symbol; a species of more than one element, or a fraction, is a disordered site."""
    symbols = {}
    try:
        for kind in species or []:
            chemical = kind.get("chemical_symbols") or []
            concentration = [float(c) for c in kind.get("concentration") or [1.0]]
            if len(chemical) != 1 or abs(concentration[0] - 1.0) > 1e-6:
                raise TansakuError(f"{name}: disordered site {kind.get('name')!r} ({chemical}, {concentration})")
            symbols[str(kind["name"])] = str(chemical[0])
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        raise TansakuError(f"{name}: malformed 'species' ({str(species)[:60]!r})") from None
    return symbols


def _entry_id(entry: Any, position: int) -> str:
    """The entry's id: what it is stored and reported under (two entries without one must not merge)."""
    if not isinstance(entry, dict):
        raise TansakuError(f"not a JSON object ({str(entry)[:40]!r})")
    entry_id = entry.get("id")
    if isinstance(entry_id, bool) or not isinstance(entry_id, str | int) or str(entry_id) == "":
        raise TansakuError("no 'id'")
    return str(entry_id)


def _state_key(url: str, filter_text: str) -> str:
    return "optimade-import:" + hashlib.sha256(f"{url}\n{filter_text}".encode()).hexdigest()[:16]


def import_optimade(db: Database, base_url: str, filter_text: str = "", max_entries: int | None = None,
                    subset: str | None = None, delay: float = 0.5, restart: bool = False,
                    progress: Callable[[int, int | None], None] | None = None,
                    page_limit: int = PAGE_LIMIT) -> ImportReport:
    """Import the structures a filter selects from an OPTIMADE server; see the module docstring."""
    from tansaku.store.materials import add_to_subset

    url = structures_url(base_url)
    host = urllib.parse.urlsplit(url).netloc or url
    source, method = f"optimade:{host}", f"import:optimade:{host}"
    key = _state_key(url, filter_text)
    with db.session() as session:
        saved = session.get(Meta, key)
        state = json.loads(saved.value) if saved is not None and not restart else None
    query = {"page_limit": str(min(page_limit, max_entries or page_limit))}
    if filter_text:
        query["filter"] = filter_text
    next_url = state["next"] if state else f"{url}?{urllib.parse.urlencode(query)}"
    seen = state["seen"] if state else 0
    client = Client(delay=delay)
    report = ImportReport()
    while next_url and (max_entries is None or seen < max_entries):
        body = client.get(next_url)
        if not isinstance(body, dict):
            raise TansakuError(f"{next_url}: the answer is not an OPTIMADE response (a JSON object)")
        if "errors" in body and not body.get("data"):
            raise TansakuError(f"{next_url}: {body['errors']}")
        entries = body.get("data") or []
        if not isinstance(entries, list):
            raise TansakuError(f"{next_url}: 'data' is not a list of entries")
        if max_entries is not None:
            entries = entries[: max_entries - seen]
        following = _next_link(body) if entries else None
        with db.session() as session:
            ids = []
            for position, entry in enumerate(entries, start=1):
                material_id = _store_entry(session, entry, position, source, method, report)
                if material_id is not None:
                    ids.append(material_id)
            if subset and ids:
                add_to_subset(session, subset, list(dict.fromkeys(ids)))
            seen += len(entries)
            done = following is None or (max_entries is not None and seen >= max_entries)
            if done:
                session.execute(delete(Meta).where(Meta.key == key))
            else:
                session.merge(Meta(key=key, value=json.dumps({"next": following, "seen": seen})))
        if progress:
            total = (body.get("meta") or {}).get("data_returned")
            progress(seen, min(total, max_entries) if total is not None and max_entries else total)
        next_url = None if done else following
    return report


def _next_link(body: dict[str, Any]) -> str | None:
    link = (body.get("links") or {}).get("next")
    if isinstance(link, dict):
        link = link.get("href")
    more = (body.get("meta") or {}).get("more_data_available")
    return link if link and more is not False else None


def _store_entry(session, entry: Any, position: int, source: str, method: str, report: ImportReport) -> int | None:
    """One entry of a page stored (or refused, by id, or by its place on the page when it has none)."""
    try:
        entry_id = _entry_id(entry, position)
    except TansakuError as exc:
        report.error(f"{source} entry {position} of the page", str(exc))
        return None
    try:
        structure = entry_structure(entry)
    except TansakuError as exc:
        report.error(f"{source} {entry_id}", str(exc).removeprefix(f"entry {entry_id}: "))
        return None
    attributes = entry.get("attributes") or {}
    mapped, kept = {}, {}
    for field, value in attributes.items():
        if not field.startswith("_"):
            continue
        number = is_finite_number(value)
        if field in PROPERTY_MAP and number:
            mapped[PROPERTY_MAP[field]] = float(value)
        elif field.startswith(OWN_PREFIX) and field not in OWN_SKIPPED and number:
            mapped[(field.removeprefix(OWN_PREFIX), None)] = float(value)
        else:
            kept[field] = None if isinstance(value, float) and not np.isfinite(value) else value  # JSONB has no NaN
    material, added = add_structure_material(session, structure, source, entry_id, report,
                                             extra={"optimade": {"id": entry_id, **kept}})
    if added:
        for (name, unit), value in mapped.items():
            set_property(session, material, name, value, method, unit=unit)
            report.properties += 1
    return material.id

