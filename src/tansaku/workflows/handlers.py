"""Error handlers: each fixes one known failure of pw.x / ph.x and says what it changed.

A handler gets the step state and the log; it returns a description of its change (recorded in the state
file and the calculation row), or None when it has nothing left to try.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pymatgen.core import Structure

from tansaku.dft.qe.parsers import last_geometry
from tansaku.workflows.state import StepState

Handler = Callable[[StepState, str], dict | None]


def _times(state: StepState, name: str) -> int:
    return sum(1 for h in state.handlers if h["handler"] == name)


def set_override(state: StepState, namelist: str, **values) -> dict:
    """Change input variables for the next attempt; the returned mapping is what the state file records."""
    state.overrides.setdefault(namelist, {}).update(values)
    return {namelist: values}


def scf_not_converged(state: StepState, log: str) -> dict | None:
    """Lower mixing_beta with more iterations; then switch to conjugate-gradient diagonalization."""
    n = _times(state, "scf_not_converged")
    if n == 0:
        return set_override(state, "electrons", mixing_beta=0.3, electron_maxstep=300)
    if n == 1:
        return set_override(state, "electrons", mixing_beta=0.1, electron_maxstep=500, diagonalization="cg")
    return None


def _continue_geometry(state: StepState, log: str) -> dict | None:
    """Make the next attempt start where a pw.x relaxation got to (None: the log printed no whole geometry)."""
    start = Structure.from_dict(state.structure) if state.structure else None
    last = last_geometry(log, start.lattice if start else None, len(start) if start else None)
    if last is None:
        return None
    state.structure = last.as_dict()
    return {"structure": f"continued from the last geometry (volume {last.volume:.3f} Å³)"}


def relax_restart(state: StepState, log: str) -> dict | None:
    """Restart from the last geometry in the log; the second time also a small BFGS trust radius."""
    n = _times(state, "relax_restart")
    if n >= 3:
        return None
    change: dict = _continue_geometry(state, log) or {}
    steps = re.findall(r"nstep\s*=\s*(\d+)", log)
    if "maximum number of steps" in log:  # ran out of steps: continue with twice as many
        previous = state.overrides.get("control", {}).get("nstep") or (int(steps[0]) if steps else 50)
        change.update(set_override(state, "control", nstep=2 * int(previous)))
    if n >= 1:
        change.update(set_override(state, "ions", trust_radius_ini=0.1, bfgs_ndim=3))
    return change or None


def walltime(state: StepState, log: str) -> dict | None:
    """Stopped at its time limit: continue from the last state (geometry for pw.x, recover for ph.x)."""
    if _times(state, "walltime") >= 5:
        return None
    if state.step.startswith("phonon"):
        return set_override(state, "inputph", recover=True)
    return _continue_geometry(state, log) or {"rerun": "no geometry to continue from; run again"}


def resume_interrupted(state: StepState, log: str) -> dict | None:
    """The attempt died with its controller (node failure, kill). Go on from what it left: a ph.x that had
    started its response iterations has checkpointed them (recover); a relaxation printed its geometries (the
    last one is the new start). Anything else (an SCF, a ph.x killed early) simply runs again."""
    if state.step.startswith("phonon"):
        return set_override(state, "inputph", recover=True) if "iter #" in log else None
    return _continue_geometry(state, log)


def ph_not_converged(state: StepState, log: str) -> dict | None:
    """Tighter linear-response mixing: alpha_mix 0.3, then 0.1; twice the iterations the attempt ran out of (its
    highest `iter #`, which is niter_ph), at least 200, so that a user's larger niter_ph is never lowered."""
    n = _times(state, "ph_not_converged")
    values = [0.3, 0.1]
    if n >= len(values):
        return None
    ran = max((int(i) for i in re.findall(r"iter #\s*(\d+)", log)), default=100)
    return set_override(state, "inputph", **{"alpha_mix(1)": values[n], "niter_ph": max(200, 2 * ran)})


def ph_symmetry(state: StepState, log: str) -> dict | None:
    """ph.x 6.x fails to classify symmetry of slightly distorted hexagonal cells: run without search_sym."""
    if _times(state, "ph_symmetry"):
        return None
    return set_override(state, "inputph", search_sym=False)


def conjugate_gradients(state: StepState, log: str) -> dict | None:
    """Davidson failed (a subspace diagonalization that broke down, or too many bands left unconverged):
    conjugate gradients, slower and steadier, once."""
    if _times(state, "conjugate_gradients"):
        return None
    return set_override(state, "electrons", diagonalization="cg")


HANDLERS: dict[str, Handler] = {
    "walltime": walltime,
    "interrupted": resume_interrupted,
    "scf_not_converged": scf_not_converged,
    "relax_max_steps": relax_restart,
    "bfgs_failed": relax_restart,
    "ph_not_converged": ph_not_converged,
    "ph_symmetry": ph_symmetry,
    "cholesky": conjugate_gradients,
    "bands_not_converged": conjugate_gradients,
}


def handler_name(code: str) -> str:
    return HANDLERS[code].__name__
