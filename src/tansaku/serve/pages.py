"""Pages and their JSON: materials (table, one material), models, campaigns, jobs, and the API's own index.

Every page is rendered on the server from the same data its `/api/...` twin returns; plots are SVG drawn by
matplotlib on request, so the pages need no JavaScript library and no internet.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.numbers import is_finite_number
from tansaku.store import browse
from tansaku.store.provenance import material_record, run_file, run_files, unfinished_steps
from tansaku.store.tables import Campaign, Material, Property

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
DEFAULT_COLUMNS = 6
MAX_FILE_BYTES = 5_000_000


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                      status_code=status)


def _svg(draw) -> Response:
    out = io.BytesIO()
    draw(out)
    return Response(out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


def _filter_from(request: Request, state, elements: str, formula: str, source: str, subset: str, method: str,
                 structures_only: bool) -> browse.MaterialFilter:
    """The filter the query string describes; `min_<property>` and `max_<property>` bound a property."""
    names = set(state.property_names())
    ranges: dict[str, list[float | None]] = {}
    bounds = list(request.query_params.items())
    chosen = request.query_params.get("range_property")  # the form's "property, from, to" fields
    if chosen:
        bounds += [(f"{b}_{chosen}", request.query_params.get(f"range_{b}", "")) for b in ("min", "max")]
    for key, text in bounds:
        bound, _, name = key.partition("_")
        if bound not in ("min", "max") or not name or text == "":
            continue
        if name not in names:
            raise TansakuError(f"{key}: no stored property {name!r} (stored: {', '.join(sorted(names))})")
        try:
            value = float(text)
        except ValueError:
            raise TansakuError(f"{key}={text[:40]!r} is not a number") from None
        if not is_finite_number(value):  # NaN binds as NULL on SQLite and above every number on PostgreSQL
            raise TansakuError(f"{key}={text[:40]!r} is not a finite number")
        ranges.setdefault(name, [None, None])[0 if bound == "min" else 1] = value
    return browse.MaterialFilter(
        elements=[e.strip() for e in elements.split(",") if e.strip()], formula=formula.strip() or None,
        source=source or None, subset=subset or None, method=method or None,
        ranges={k: (v[0], v[1]) for k, v in ranges.items()}, structures_only=structures_only)


def _columns(state, text: str, flt: browse.MaterialFilter) -> list[str]:
    names = state.property_names()
    if text:
        wanted = [c.strip() for c in text.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise TansakuError(f"no stored property {unknown[0]!r} (stored: {', '.join(names)})")
        return wanted
    chosen = [n for n in flt.ranges if n in names]
    return chosen + [n for n in names if n not in chosen][: max(0, DEFAULT_COLUMNS - len(chosen))]


@dataclass
class TableQuery:
    flt: browse.MaterialFilter
    columns: list[str]
    sort: str
    desc: bool


def router(state) -> APIRouter:  # noqa: C901 - one closure per page keeps the routes readable together
    pages = APIRouter()

    def table_query(
        request: Request,
        elements: str = Query("", max_length=200, description="Elements all present, comma-separated: Mg,O"),
        formula: str = Query("", max_length=100, description="A formula in any element order: MgO or OMg"),
        source: str = Query("", max_length=128, description="Where the materials came from, e.g. oxi_diel_db"),
        subset: str = Query("", max_length=64, description="A named subset, e.g. paper"),
        method: str = Query("", max_length=128, description="Whose values count: import:..., dft:qe, "
                            "ml:<model id>; default: measured values (imported or computed)"),
        structures_only: bool = Query(False, description="Only materials with a structure"),
        columns: str = Query("", max_length=1000, description="Property columns, comma-separated"),
        sort: str = Query("id", max_length=64, description="id, formula, nsites, nelements, spacegroup, source, "
                          "source_id or a shown property"),
        desc: bool = Query(False, description="Sort descending"),
    ) -> TableQuery:
        """The table's filter, columns and order, parsed once for the page, its JSON and its CSV."""
        flt = _filter_from(request, state, elements, formula, source, subset, method, structures_only)
        return TableQuery(flt, _columns(state, columns, flt), sort, desc)

    def page_of(q: TableQuery, offset: int, limit: int) -> browse.Page:
        with state.db.session() as session:
            return browse.material_page(session, q.flt, q.columns, q.sort, q.desc, offset, limit)

    @pages.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/materials")

    @pages.get("/materials", response_class=HTMLResponse, include_in_schema=False)
    def materials_page(request: Request, q: TableQuery = Depends(table_query),
                       offset: int = Query(0, ge=0, le=10**7), limit: int = Query(50, ge=1, le=browse.MAX_PAGE)):
        page = page_of(q, offset, limit)
        query = {k: v for k, v in request.query_params.items() if k not in ("offset",)}
        return TEMPLATES.TemplateResponse(request, "materials.html", {
            "page": page, "flt": q.flt, "query": query, "properties": state.property_names(),
            "sources": state.sources(), "subsets": state.subsets(), "methods": state.methods(),
            "sort": q.sort, "desc": q.desc, "params": request.query_params})

    @pages.get("/api/materials", tags=["materials"])
    def materials_json(q: TableQuery = Depends(table_query), offset: int = Query(0, ge=0, le=10**7),
                       limit: int = Query(50, ge=1, le=browse.MAX_PAGE)) -> dict[str, Any]:
        """One page of the materials table. Bound a property with `min_<name>` and `max_<name>`, e.g.
        `?elements=O&min_band_gap=2&max_band_gap=3&sort=band_gap`."""
        page = page_of(q, offset, limit)
        return {"total": page.total, "offset": page.offset, "limit": page.limit, "columns": page.columns,
                "rows": page.rows}

    @pages.get("/materials.csv", tags=["materials"])
    def materials_csv(q: TableQuery = Depends(table_query)) -> StreamingResponse:
        """Every row of the current filter as CSV (each property a value and a `<name>_method` column)."""
        flt, shown, sort, desc = q.flt, q.columns, q.sort, q.desc
        page_of(q, 0, 1)  # a bad sort or filter is refused before the stream starts

        def rows():
            header = ["id", "reduced_formula", "nsites", "spacegroup_symbol", "source", "source_id"]
            header += [c for name in shown for c in (name, f"{name}_method")]
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            with state.db.session() as session:
                for n, row in enumerate(browse.iter_filtered(session, flt, shown, sort, desc), start=1):
                    writer.writerow(row)
                    if n % 500 == 0:
                        yield buffer.getvalue()
                        buffer.seek(0)
                        buffer.truncate()
            yield buffer.getvalue()

        return StreamingResponse(rows(), media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="materials.csv"'})

    @pages.get("/materials/{material_id}", response_class=HTMLResponse, include_in_schema=False)
    def material_page(request: Request, material_id: int):
        with state.db.session() as session:
            record = material_record(session, material_id)
        files = {c["id"]: run_files(c) for c in record["calculations"]}
        return TEMPLATES.TemplateResponse(request, "material.html", {"m": record, "files": files,
                                                                     "dumps": _dumps})

    @pages.get("/api/materials/{material_id}", tags=["materials"])
    def material_json(material_id: int) -> dict[str, Any]:
        """A material with its structure, every property with its method and calculation, its predictions with
        intervals and model id, and every calculation with inputs, outputs and run directory."""
        with state.db.session() as session:
            return material_record(session, material_id)

    @pages.get("/materials/{material_id}/structure.svg", include_in_schema=False)
    def structure_svg(material_id: int) -> Response:
        from tansaku.plots.figures import structure_picture

        with state.db.session() as session:
            material = session.get(Material, material_id)
            if material is None or material.structure_json is None:
                raise TansakuError(f"no structure for material {material_id}")
            structure, title = material.structure(), f"{material.reduced_formula} {material.spacegroup_symbol or ''}"
        return _svg(lambda out: structure_picture(structure, out, title))

    @pages.get("/materials/{material_id}/structure.cif", tags=["materials"])
    def structure_cif(material_id: int) -> Response:
        """The structure as a CIF file."""
        with state.db.session() as session:
            material = session.get(Material, material_id)
            if material is None or material.structure_json is None:
                raise TansakuError(f"no structure for material {material_id}")
            text = material.structure().to(fmt="cif")
        return Response(text, media_type="chemical/x-cif",
                        headers={"Content-Disposition": f'attachment; filename="{material_id}.cif"'})

    @pages.get("/calculations/{calculation_id}/files/{relative:path}", tags=["materials"])
    def calculation_file(calculation_id: int, relative: str) -> FileResponse:
        """An input or output file of a calculation's run directory (nothing outside it)."""
        with state.db.session() as session:
            path = run_file(session, calculation_id, relative)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise TansakuError(f"{relative} is larger than {MAX_FILE_BYTES // 1_000_000} MB; read it on disk")
        return FileResponse(path, media_type="text/plain; charset=utf-8")

    @pages.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request):
        models, problems = _models(state)
        return TEMPLATES.TemplateResponse(request, "models.html", {"models": models, "problems": problems,
                                                                   "models_dir": state.models_dir})

    @pages.get("/api/models", tags=["models"])
    def models_json() -> dict[str, Any]:
        """Models found in the server's --models directory, with metrics and how many predictions are stored."""
        models, problems = _models(state)
        return {"models": [_public(m) for m in models], "unreadable": problems}

    @pages.get("/models/{model_id}", response_class=HTMLResponse, include_in_schema=False)
    def model_page(request: Request, model_id: str):
        model = _model(state, model_id)
        return TEMPLATES.TemplateResponse(request, "model.html", {"model": _public(model), "dumps": _dumps})

    @pages.get("/models/{model_id}/parity.svg", include_in_schema=False)
    def model_parity(model_id: str) -> Response:
        import numpy as np

        from tansaku.plots.figures import parity

        meta, oof = _drawable(state, model_id, "oof", "its cross-validated predictions")
        label = f"log10 {meta['property']}" if meta.get("transform") == "log10" else meta["property"]
        r2 = (meta.get("metrics") or {}).get("cv", {}).get("r2")
        y, mean, std = (np.array(oof[k]) for k in ("y", "mean", "std"))
        return _svg(lambda out: parity(y, mean, std, out, label, r2))

    @pages.get("/models/{model_id}/importance.svg", include_in_schema=False)
    def model_importance(model_id: str) -> Response:
        from tansaku.plots.figures import importance

        meta, found = _drawable(state, model_id, "importance", "feature importances")
        return _svg(lambda out: importance(found["names"], found["values"], out, f"importance: {meta['property']}"))

    @pages.get("/campaigns", response_class=HTMLResponse, include_in_schema=False)
    def campaigns_page(request: Request):
        return TEMPLATES.TemplateResponse(request, "campaigns.html", {"campaigns": _campaigns(state)})

    @pages.get("/api/campaigns", tags=["campaigns"])
    def campaigns_json() -> list[dict[str, Any]]:
        """Every campaign: name, status, property, goal, runs, hits and CPU hours spent."""
        return _campaigns(state)

    @pages.get("/campaigns/{name}", response_class=HTMLResponse, include_in_schema=False)
    def campaign_page(request: Request, name: str):
        from tansaku.active.campaign import campaign_status

        status = campaign_status(state.db, name)
        return TEMPLATES.TemplateResponse(request, "campaign.html", {"c": status, "dumps": _dumps})

    @pages.get("/api/campaigns/{name}", tags=["campaigns"])
    def campaign_json(name: str) -> dict[str, Any]:
        """Goal, budget used, rounds and picks with reasons, predictions, outcomes and CPU hours."""
        from tansaku.active.campaign import campaign_status

        return campaign_status(state.db, name)

    @pages.get("/campaigns/{name}/progress.svg", include_in_schema=False)
    def campaign_svg(name: str) -> Response:
        from tansaku.active.campaign import campaign_status
        from tansaku.plots.figures import campaign_progress

        status = campaign_status(state.db, name)
        return _svg(lambda out: campaign_progress(status, out))

    @pages.get("/campaigns/{name}/cost.svg", include_in_schema=False)
    def campaign_cost_svg(name: str) -> Response:
        from tansaku.active.campaign import campaign_status
        from tansaku.plots.figures import campaign_cost

        status = campaign_status(state.db, name)
        return _svg(lambda out: campaign_cost(status, out))

    @pages.get("/jobs", response_class=HTMLResponse, include_in_schema=False)
    def jobs_page(request: Request):
        with state.db.session() as session:
            steps = _with_scheduler_state(unfinished_steps(session))
        return TEMPLATES.TemplateResponse(request, "jobs.html", {"steps": steps})

    @pages.get("/api/jobs", tags=["jobs"])
    def jobs_json(include_failed: bool = Query(True, description="Also steps that failed")) -> list[dict[str, Any]]:
        """Workflow steps queued, running or waiting to be retried (local and SLURM), with elapsed time, and
        failed ones with their reason; a SLURM job's state as the scheduler reports it now."""
        with state.db.session() as session:
            return _with_scheduler_state(unfinished_steps(session, include_failed))

    @pages.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api_index(request: Request):
        spec = request.app.openapi()
        endpoints = [(path, op.get("summary", ""), op.get("description", ""), op.get("parameters", []))
                     for path, ops in spec["paths"].items() for op in ops.values()]
        return TEMPLATES.TemplateResponse(request, "api.html", {"endpoints": endpoints})

    return pages


def _with_scheduler_state(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add what SLURM says of each unfinished batch job (as `tansaku jobs` does); None where it cannot be asked."""
    import shutil

    from tansaku.workflows.slurm import job_fields

    can_ask = shutil.which("scontrol") is not None
    for step in steps:
        step["scheduler_state"] = None
        if can_ask and step["executor"] == "slurm" and step["job_id"] and step["status"] != "failed":
            fields = job_fields(step["job_id"])
            step["scheduler_state"] = fields.get("JobState") if fields else "no longer known to SLURM"
    return steps


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


def _models(state) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Models in the --models directory (files ending .pkl), each with its metadata and stored predictions."""
    from tansaku.models.persistence import load_model

    if state.models_dir is None:
        return [], []
    models, problems = [], []
    for path in sorted(Path(state.models_dir).glob("*.pkl")):
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)  # a model file is unpickled once per version of it
        if key not in state.model_meta:
            try:
                state.model_meta[key] = load_model(path)[1]
            except TansakuError as exc:
                state.model_meta[key] = TansakuError(str(exc))
        meta = state.model_meta[key]
        if isinstance(meta, TansakuError):
            problems.append({"file": path.name, "reason": str(meta)})
            continue
        models.append({"file": path.name, "meta": meta})
    if models:
        with state.db.session() as session:
            counts = dict(session.execute(select(Property.method, func.count()).where(
                Property.method.in_([f"ml:{m['meta']['id']}" for m in models])).group_by(Property.method)).all())
        for model in models:
            model["predictions"] = counts.get(f"ml:{model['meta']['id']}", 0)
    return models, problems


def _model(state, model_id: str) -> dict[str, Any]:
    for model in _models(state)[0]:
        if model["meta"]["id"] == model_id:
            return model
    raise TansakuError(f"no model {model_id!r} in the models directory")


def _drawable(state, model_id: str, key: str, what: str) -> tuple[dict[str, Any], Any]:
    """A model's metadata and the part of it a plot draws; models saved before tansaku kept it say so."""
    meta = _model(state, model_id)["meta"]
    if not meta.get(key):
        raise TansakuError(f"model {model_id} was saved without {what}; retrain it to see this plot")
    return meta, meta[key]


def _public(model: dict[str, Any]) -> dict[str, Any]:
    """The model's metadata without the bulky arrays (those are drawn, not listed)."""
    meta = {k: v for k, v in model["meta"].items() if k not in ("oof", "domain", "feature_names")}
    meta["n_features"] = len(model["meta"].get("feature_names", []))
    meta["has_parity"] = bool(model["meta"].get("oof"))
    meta["has_importance"] = bool(model["meta"].get("importance"))
    meta.pop("importance", None)
    return {"file": model["file"], "predictions": model.get("predictions", 0), "meta": meta}


def _campaigns(state) -> list[dict[str, Any]]:
    from tansaku.active.campaign import campaign_status

    with state.db.session() as session:
        names = list(session.scalars(select(Campaign.name).order_by(Campaign.id)))
    out = []
    for name in names:
        status = campaign_status(state.db, name)
        out.append({k: status[k] for k in ("name", "status", "stop_reason", "property", "oracle", "goal", "budget",
                                           "runs", "hits", "cpu_hours", "outcomes")})
    return out
