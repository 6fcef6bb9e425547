"""Running a workflow (dielectric by default) for many materials at once, N at a time, each reported alone."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from tansaku import TansakuError
from tansaku.chemistry.structures import check_ordered, structure_inputs
from tansaku.sources.structures import FILE_SOURCE
from tansaku.store.database import Database
from tansaku.store.filters import build_query
from tansaku.store.materials import ImportReport, add_structure_material
from tansaku.store.tables import Material
from tansaku.workflows.dielectric import run_dielectric
from tansaku.workflows.run import RunContext, WorkflowResult


def resolve_inputs(
    db: Database, files: list[Path] | None = None, ids: list[int] | None = None, query: str | None = None
) -> tuple[dict[str, int], dict[str, WorkflowResult]]:
    """Map each input as given (file path, path#block for one of several structures in a file, or id) to a stored
    material; bad inputs become failed results."""
    targets: dict[str, int] = {}
    failures: dict[str, WorkflowResult] = {}
    for item in structure_inputs(files or []):
        try:
            structure = item.read()
            check_ordered(structure, item.label)
            with db.session() as session:
                material, _ = add_structure_material(session, structure, FILE_SOURCE, item.source_id,
                                                     ImportReport(), extra=item.origin)
                targets[item.label] = material.id
        except TansakuError as exc:
            failures[item.label] = WorkflowResult(status="failed", reason=str(exc))
    with db.session() as session:
        for material_id in ids or []:
            if session.get(Material, material_id) is None:
                reason = f"no material with id {material_id}"
                failures[str(material_id)] = WorkflowResult(status="failed", reason=reason)
            else:
                targets[str(material_id)] = material_id
        if query:
            for material_id in session.scalars(build_query(query)):
                targets[str(material_id)] = material_id
    return targets, failures


def run_many(
    ctx: RunContext,
    targets: dict[str, int],
    workers: int = 1,
    on_update: Callable[[str, str], None] | None = None,
    on_result: Callable[[str, WorkflowResult], None] | None = None,
    runner: Callable[..., WorkflowResult] = run_dielectric,
) -> dict[str, WorkflowResult]:
    """Run every target with `workers` materials in flight; one material's failure never stops the others.

    `on_update(key, step)` follows progress; `on_result(key, result)` is called as each material finishes.
    """
    results: dict[str, WorkflowResult] = {}
    ctx = replace(ctx, workers=max(1, workers))
    with ThreadPoolExecutor(max_workers=ctx.workers) as pool:
        futures = {
            pool.submit(runner, ctx, material_id,
                        (lambda step, key=key: on_update(key, step)) if on_update else None): key
            for key, material_id in targets.items()
        }
        for future in as_completed(futures):
            key = futures[future]
            try:
                results[key] = future.result()
            except Exception as exc:  # noqa: BLE001 - report, never lose the batch
                results[key] = WorkflowResult(status="failed", reason=f"{type(exc).__name__}: {exc}")
            if on_update:
                on_update(key, results[key].status)
            if on_result:
                on_result(key, results[key])
    return results
