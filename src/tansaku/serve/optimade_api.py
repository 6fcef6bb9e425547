"""OPTIMADE out: /optimade/versions, /optimade/v1/info, /info/structures, /structures, /structures/{id}, /links.

Filters are translated onto the store (`interop.optimade_filter`); entries are built by `interop.optimade_entries`.
Responses follow the JSON:API shape of the OPTIMADE specification 1.2; errors carry their status and a detail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select

from tansaku import __version__
from tansaku.interop.optimade_entries import SORTABLE, entry_info, measured_values, to_entry
from tansaku.interop.optimade_filter import PREFIX, FilterError, to_sql
from tansaku.store.tables import Material

API_VERSION = "1.2.0"
SCHEMA = "https://schemas.optimade.org/openapi/v1.2/optimade.json"
DEFAULT_PAGE = 20
MAX_PAGE = 500
SORT_COLUMNS = {"id": Material.id, "last_modified": Material.created_at, "nelements": Material.nelements,
                "nsites": Material.nsites, "chemical_formula_reduced": Material.formula_alphabetical,
                "chemical_formula_anonymous": Material.formula_anonymous,
                "chemical_formula_descriptive": Material.formula, "space_group_it_number": Material.spacegroup_number}
assert set(SORT_COLUMNS) == SORTABLE
PROVIDER = {"name": "tansaku", "description": "a tansaku materials database: structures, computed and imported "
            "properties with their provenance", "prefix": PREFIX,
            "homepage": "https://github.com/tansaku-materials/tansaku"}


class OptimadeError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


TITLES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 501: "Not Implemented",
          553: "Version Not Supported"}


def _meta(request: Request, **more: Any) -> dict[str, Any]:
    return {"query": {"representation": request.url.path + (f"?{request.url.query}" if request.url.query else "")},
            "api_version": API_VERSION, "more_data_available": False, "schema": SCHEMA,
            "time_stamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "provider": PROVIDER,
            "implementation": {"name": "tansaku", "version": __version__}, **more}


def error_response(request: Request, status: int, detail: str) -> JSONResponse:
    body = {"errors": [{"status": str(status), "title": TITLES.get(status, "Error"), "detail": detail}],
            "meta": _meta(request)}
    return JSONResponse(body, status_code=status, media_type="application/vnd.api+json")


def _json(body: dict) -> JSONResponse:
    return JSONResponse(body, media_type="application/vnd.api+json")


def _int_parameter(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise OptimadeError(400, f"{name} must be a whole number, not {text[:40]!r}") from None
    if not lo <= value <= hi:
        status = 403 if name == "page_limit" and value > hi else 400
        raise OptimadeError(status, f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _check_common(request: Request) -> None:
    response_format = request.query_params.get("response_format", "json")
    if response_format != "json":
        raise OptimadeError(400, f"response_format {response_format[:40]!r} is not served: only 'json'")


def router(app_state) -> APIRouter:
    """The OPTIMADE endpoints over the app's database (`app_state.db`)."""
    api = APIRouter()

    @api.get("/optimade/versions", response_class=PlainTextResponse, tags=["OPTIMADE"])
    def versions() -> PlainTextResponse:
        """The major API versions served, as the specification asks: text/csv with a header line."""
        return PlainTextResponse("version\n1\n", media_type="text/csv; header=present")

    for base in ("/optimade/v1", "/optimade"):
        _endpoints(api, base, app_state)

    @api.get("/optimade/{version}/{rest:path}", include_in_schema=False)
    def other_version(version: str, rest: str, request: Request) -> JSONResponse:
        if version != "v1" and version.startswith("v"):
            return error_response(request, 553, f"API version {version[:20]!r} is not served; this server "
                                  "serves v1")
        return error_response(request, 404, f"no OPTIMADE endpoint {request.url.path[:100]!r}")

    return api


def _endpoints(api: APIRouter, base: str, app_state) -> None:
    """The entry and info endpoints under one base: /optimade/v1 and the unversioned /optimade (the same)."""
    shown = base == "/optimade/v1"  # the OpenAPI description lists the versioned ones

    def property_names() -> list[str]:
        return app_state.property_names()

    @api.get(f"{base}/info", tags=["OPTIMADE"], include_in_schema=shown)
    def info(request: Request) -> JSONResponse:
        """What this OPTIMADE implementation serves."""
        base = str(request.base_url).rstrip("/") + "/optimade"
        data = {"id": "/", "type": "info", "attributes": {
            "api_version": API_VERSION,
            "available_api_versions": [{"url": f"{base}/v1/", "version": API_VERSION}],
            "formats": ["json"], "entry_types_by_format": {"json": ["structures"]},
            "available_endpoints": ["info", "links", "structures"], "is_index": False}}
        return _json({"data": data, "meta": _meta(request)})

    @api.get(f"{base}/info/structures", tags=["OPTIMADE"], include_in_schema=shown)
    def info_structures(request: Request) -> JSONResponse:
        """The fields of a structure entry: type, unit, whether it sorts, and what it means."""
        return _json({"data": entry_info(property_names()), "meta": _meta(request)})

    @api.get(f"{base}/links", tags=["OPTIMADE"], include_in_schema=shown)
    def links(request: Request) -> JSONResponse:
        """Other OPTIMADE databases this one links to: none."""
        _check_common(request)
        return _json({"data": [], "meta": _meta(request, data_returned=0, data_available=0)})

    @api.get(f"{base}/structures", tags=["OPTIMADE"], include_in_schema=shown)
    def structures(request: Request) -> JSONResponse:
        """Structures matching `filter` (the OPTIMADE filter language), `page_limit` at a time from
        `page_offset`, sorted by `sort` (e.g. `-nsites,id`)."""
        _check_common(request)
        names = property_names()
        limit = _int_parameter(request, "page_limit", DEFAULT_PAGE, 0, MAX_PAGE)
        offset = _int_parameter(request, "page_offset", 0, 0, 10**9)
        if "page_number" in request.query_params:
            number = _int_parameter(request, "page_number", 1, 1, 10**9)
            offset = (number - 1) * limit
        text = request.query_params.get("filter", "").strip()
        try:
            condition = to_sql(text, names) if text else None
        except FilterError as exc:
            raise OptimadeError(exc.status, exc.detail) from None
        order = _order(request.query_params.get("sort"))
        base = select(Material).where(Material.structure_json.is_not(None))
        if condition is not None:
            base = base.where(condition)
        with app_state.db.session() as session:
            returned = session.scalar(select(func.count()).select_from(base.subquery())) or 0
            materials = list(session.scalars(base.order_by(*order).offset(offset).limit(limit))) if limit else []
            values = measured_values(session, [m.id for m in materials])
            data = [_fields(to_entry(m, values[m.id]), request) for m in materials]
        more = offset + len(data) < returned
        body: dict[str, Any] = {"data": data, "meta": _meta(request, data_returned=returned,
                                                            data_available=app_state.structure_count(),
                                                            more_data_available=more)}
        if more:
            query = {k: v for k, v in request.query_params.items() if k not in ("page_offset", "page_number")}
            query.update(page_offset=str(offset + len(data)), page_limit=str(limit))
            body["links"] = {"next": f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(query)}"}
        else:
            body["links"] = {"next": None}
        return _json(body)

    @api.get(f"{base}/structures/{{entry_id}}", tags=["OPTIMADE"], include_in_schema=shown)
    def structure(entry_id: str, request: Request) -> JSONResponse:
        """One structure by its id."""
        _check_common(request)
        material_id = int(entry_id) if entry_id.isdigit() and len(entry_id) < 19 else None
        with app_state.db.session() as session:
            material = session.get(Material, material_id) if material_id is not None else None
            if material is None or material.structure_json is None:
                return _json({"data": None, "meta": _meta(request, data_returned=0)})
            entry = to_entry(material, measured_values(session, [material.id])[material.id])
        return _json({"data": _fields(entry, request), "meta": _meta(request, data_returned=1)})


def _order(sort: str | None) -> list:
    if not sort:
        return [Material.id]
    order = []
    for item in sort.split(","):
        name = item.strip().lstrip("-")
        if name not in SORT_COLUMNS:
            raise OptimadeError(400, f"cannot sort by {name[:60]!r}; sortable fields: {', '.join(sorted(SORTABLE))}")
        column = SORT_COLUMNS[name]
        order.append(column.desc() if item.strip().startswith("-") else column.asc())
    return [*order, Material.id]


def _fields(entry: dict[str, Any], request: Request) -> dict[str, Any]:
    """Keep only `response_fields` (id and type always stay), as the client asked."""
    wanted = request.query_params.get("response_fields")
    if not wanted:
        return entry
    names = [n.strip() for n in wanted.split(",") if n.strip() and n.strip() not in ("id", "type")]
    # a field asked for but without a value here is still given, as null (the specification's rule)
    entry["attributes"] = {name: entry["attributes"].get(name) for name in names}
    return entry

