"""One material with everything that says where its values came from: what a person checks before trusting one.

Properties carry their method and the calculation row that made them; that row carries its settings, the
pseudopotentials' checksums, the code version and the run directory. Predictions carry their model id and
interval. Jobs are the workflow steps not yet finished, with how long they have been running.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tansaku import TansakuError
from tansaku.models import transform as transforms
from tansaku.processes import pid_alive_in
from tansaku.store.filters import ML_PREFIX
from tansaku.store.tables import Calculation, Material, Property, Subset, utcnow

UNFINISHED = ("created", "new", "running", "retry")


def level_of_theory(method: str) -> str:
    """How a value was obtained, in words: 'computed (dft:qe)', 'imported (oxi_diel_db)', 'predicted (model id)'."""
    if method.startswith(ML_PREFIX):
        return f"predicted by model {method.removeprefix(ML_PREFIX)}"
    if method.startswith("import:"):
        return f"imported from {method.removeprefix('import:')}"
    if method.startswith("dft:"):
        return f"computed ({method})"
    return method


def _prediction_interval(prop: Property) -> dict[str, Any] | None:
    extra = prop.extra or {}
    if "mean" not in extra or "std" not in extra:
        return None
    value, low, high = transforms.inverse(extra.get("transform") or ("log10" if extra.get("log10") else "none"),
                                          extra["mean"], extra["std"])
    return {"value": float(value), "low": float(low), "high": float(high), "in_domain": extra.get("in_domain"),
            "domain": extra.get("domain")}


def calculation_record(calc: Calculation) -> dict[str, Any]:
    return {
        "id": calc.id, "workflow": calc.workflow, "step": calc.step, "preset": calc.preset, "engine": calc.engine,
        "status": calc.status, "attempts": calc.attempts, "error": calc.error, "job_id": calc.job_id,
        "code_version": calc.code_version, "cpu_seconds": calc.cpu_seconds, "work_dir": calc.work_dir,
        "inputs": calc.inputs, "outputs": calc.outputs,
        "started_at": _iso(calc.started_at), "finished_at": _iso(calc.finished_at),
    }


def material_record(session: Session, material_id: int) -> dict[str, Any]:
    material = session.get(Material, material_id)
    if material is None:
        raise TansakuError(f"no material with id {material_id}")
    calcs = {c.id: c for c in material.calculations}
    # the analysis step that stores the values ran no code itself: the run's pseudopotentials and settings are
    # those its DFT steps (same workflow and preset) recorded
    run_inputs: dict[tuple[str, str], dict] = {}
    for calc in sorted(calcs.values(), key=lambda c: c.id):
        if (calc.inputs or {}).get("pseudo_sha256"):
            run_inputs.setdefault((calc.workflow, calc.preset), calc.inputs)
    properties, predictions = [], []
    for prop in sorted(material.properties, key=lambda p: (p.name, p.id)):
        row = {"name": prop.name, "value": prop.value, "unit": prop.unit, "method": prop.method,
               "level_of_theory": level_of_theory(prop.method), "tensor": prop.tensor, "extra": prop.extra,
               "calculation_id": prop.calculation_id, "created_at": _iso(prop.created_at)}
        if prop.method.startswith(ML_PREFIX):
            predictions.append({**row, "model_id": prop.method.removeprefix(ML_PREFIX),
                                "interval": _prediction_interval(prop)})
        else:
            calc = calcs.get(prop.calculation_id)
            if calc is not None:
                inputs = run_inputs.get((calc.workflow, calc.preset), {})
                row["calculation"] = {
                    "step": calc.step, "preset": calc.preset, "code_version": calc.code_version,
                    "pseudo_sha256": inputs.get("pseudo_sha256"), "pseudos": inputs.get("pseudos"),
                    "settings": inputs.get("settings"), "tansaku_version": inputs.get("tansaku_version")}
            else:
                row["calculation"] = None
            properties.append(row)
    return {
        "id": material.id, "formula": material.formula, "reduced_formula": material.reduced_formula,
        "elements": material.elements.split(","), "nsites": material.nsites,
        "spacegroup": material.spacegroup_symbol, "spacegroup_number": material.spacegroup_number,
        "source": material.source, "source_id": material.source_id, "duplicate_of": material.duplicate_of,
        "extra": material.extra, "created_at": _iso(material.created_at),
        "subsets": sorted(session.scalars(select(Subset.name).where(Subset.material_id == material_id))),
        "structure": json.loads(material.structure_json) if material.structure_json else None,
        "properties": properties, "predictions": predictions,
        "calculations": [calculation_record(c) for c in sorted(calcs.values(), key=lambda c: c.id)],
    }


def run_file(session: Session, calculation_id: int, relative: str) -> Path:
    """A file inside a calculation's run directory; anything outside it (.., absolute paths, symbolic links that
    leave it) is refused, so a link on a page can never reach the rest of the disk."""
    calc = session.get(Calculation, calculation_id)
    if calc is None or not calc.work_dir:
        raise TansakuError(f"calculation {calculation_id} has no run directory")
    root = Path(calc.work_dir).resolve()
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise TansakuError(f"{relative!r} is not a path inside the run directory")
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise TansakuError(f"{relative!r} is not a file of calculation {calculation_id}'s run directory")
    return target


def run_files(calc: dict[str, Any], limit: int = 200) -> list[str]:
    """The input and output files of a calculation's run directory (relative paths), wavefunctions left out."""
    if not calc.get("work_dir"):
        return []
    root = Path(calc["work_dir"])
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.endswith(".save") or part.startswith("_ph") for part in relative.parts):
            found.append(str(relative))
            if len(found) >= limit:
                break
    return found


def unfinished_steps(session: Session, include_failed: bool = True, limit: int = 500) -> list[dict[str, Any]]:
    """Workflow steps queued, running or waiting for a retry (and recent failures), with elapsed time."""
    statuses = [*UNFINISHED, "failed"] if include_failed else list(UNFINISHED)
    query = (select(Calculation, Material.reduced_formula).join(Material)
             .where(Calculation.status.in_(statuses)).order_by(Calculation.id.desc()).limit(limit))
    now = utcnow()
    out = []
    for calc, formula in session.execute(query):
        end = calc.finished_at or (now if calc.status != "failed" else None)
        elapsed = (end - calc.started_at).total_seconds() if calc.started_at and end else None
        executor = (calc.inputs or {}).get("executor") or "local"
        out.append({"id": calc.id, "material_id": calc.material_id, "formula": formula, "workflow": calc.workflow,
                    "step": calc.step, "preset": calc.preset, "status": calc.status, "job_id": calc.job_id,
                    "executor": executor, "attempts": calc.attempts, "process_alive": _alive(calc, executor),
                    "elapsed_seconds": elapsed, "error": calc.error, "started_at": _iso(calc.started_at)})
    return out


def _alive(calc: Calculation, executor: str) -> bool | None:
    """Is a local running step's process still there (seen from this machine)? None when not knowable here:
    not running, no process id, or a batch job (its scheduler knows: `tansaku jobs`)."""
    if calc.status != "running" or executor != "local" or not (calc.job_id or "").isdigit() or not calc.work_dir:
        return None
    return pid_alive_in(int(calc.job_id), Path(calc.work_dir))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
