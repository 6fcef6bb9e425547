"""Descriptors read off a pretrained machine-learned interatomic potential (CHGNet, trained on the Materials
Project's relaxation trajectories): what it learned about each site's bonding environment, pooled over the
crystal, plus how stiff the lattice is against a polar displacement.

ε_ion is Z*ᵀ K⁻¹ Z* / Ω: it is large where the force constants K are soft along the pattern the field drives
(cations one way, anions the other). Hand-made geometry descriptors see that only indirectly; a potential that
knows the forces sees it directly. Two numbers per direction come from four force calls: the stiffness
vᵀKv / vᵀv along the nominal-charge pattern v (central differences), and from it the lower bound
(qᵀq)² / (qᵀKq) on qᵀK⁻¹q, scaled by the volume like ε_ion.

Needs the optional dependency `chgnet` (and PyTorch): `pip install 'tansaku[mlip]'`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from functools import lru_cache

import numpy as np
from pymatgen.core import Structure

from tansaku import TansakuError
from tansaku.chemistry.oxidation import anion_elements, guess_oxidation_states
from tansaku.chemistry.structures import check_ordered

MODEL = "0.3.0"  # CHGNet weights shipped in its wheel: the version pins what the descriptors mean
VERSION = f"chgnet-{MODEL}-1"
WIDTH = 64  # CHGNet's atom and crystal feature length
LAST_ELEMENT_Z = 94  # CHGNet 0.3.0 embeds H to Pu
STEP = 0.01  # Å: the largest single-atom move of a polar displacement
SCALARS = ["mlip_energy_per_atom", "mlip_max_force", "mlip_max_magmom", "mlip_pressure", "mlip_stress_anisotropy"]
# softness also as log10: the stacked ridge reads these columns too, and log ε_ion is what it predicts
POLAR = ["polar_stiffness_min", "polar_stiffness_mean", "polar_softness_max", "polar_softness_mean",
         "polar_softness_max_log10", "polar_softness_mean_log10"]


def names() -> list[str]:
    pooled = [f"mlip_{what}_{i}" for what in ("crystal", "cation_mean", "cation_max", "anion_mean")
              for i in range(WIDTH)]
    return pooled + SCALARS + POLAR


@lru_cache(maxsize=1)
def potential():
    """The pretrained CHGNet, loaded once per process. CHGNet prints a line on construction whatever `verbose`
    says; it is swallowed so that CSV or JSON written to standard output stays clean."""
    try:
        from chgnet.model import CHGNet
    except ImportError as error:
        raise TansakuError("CHGNet's descriptors and relaxation need CHGNet and PyTorch: pip install 'tansaku[mlip]' "
                           f"({error})") from None
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(model_name=MODEL, use_device="cpu", verbose=False)


def nominal_charges(structure: Structure) -> np.ndarray:
    """Each site's charge from the charge-balanced guess; without one, anions at their usual charge and the
    cations sharing the balance equally (the displacement pattern needs a direction, not exact charges)."""
    composition = structure.composition
    guess = guess_oxidation_states(composition.reduced_formula)
    if guess is not None:
        return np.array([float(guess[site.specie.symbol]) for site in structure])
    anions = anion_elements(composition)
    q = np.array([-2.0 if site.specie.symbol in anions else 0.0 for site in structure])
    cations = q == 0
    q[cations] = -q.sum() / max(int(cations.sum()), 1)
    return q


def _polar_patterns(structure: Structure) -> tuple[np.ndarray, list[np.ndarray]]:
    q = nominal_charges(structure)
    patterns = []
    for axis in range(3):
        v = np.zeros((len(structure), 3))
        v[:, axis] = q
        patterns.append(v)
    return q, patterns


def _displaced(structure: Structure, shift: np.ndarray) -> Structure:
    return Structure(structure.lattice, structure.species, structure.cart_coords + shift, coords_are_cartesian=True)


def check_readable(structure) -> None:
    """Refuse what CHGNet cannot read (not a pymatgen Structure, disordered, elements beyond Pu), naming it."""
    if not isinstance(structure, Structure):
        raise TansakuError(f"CHGNet needs pymatgen Structures, got {type(structure).__name__}")
    check_ordered(structure, structure.composition.reduced_formula, "CHGNet needs an ordered cell")
    beyond = sorted({site.specie.symbol for site in structure if site.specie.Z > LAST_ELEMENT_Z})
    if beyond:
        raise TansakuError(f"{structure.composition.reduced_formula}: CHGNet was trained on elements up to Pu "
                           f"(Z = {LAST_ELEMENT_Z}) and cannot read {', '.join(beyond)}")


def mlip_descriptors(structures: list[Structure], batch_size: int = 4) -> np.ndarray:
    """One row per structure (see `names`). Structures go through CHGNet in batches: one call for the learned
    features, one for the six displaced copies of each (small batches: CHGNet keeps every graph's gradients,
    and 48 cells of 40 atoms took 9 GB)."""
    for structure in structures:
        check_readable(structure)
    model = potential()
    rows = []
    for start in range(0, len(structures), batch_size):
        chunk = structures[start : start + batch_size]
        plain = _predict(model, chunk, task="efsm", return_atom_feas=True, return_crystal_feas=True,
                         batch_size=batch_size)
        displaced, scales = [], []
        for structure in chunk:
            q, patterns = _polar_patterns(structure)
            scale = STEP / max(np.abs(q).max(), 1e-9)
            scales.append((q, scale))
            displaced += [_displaced(structure, sign * scale * v) for v in patterns for sign in (1, -1)]
        moved = _predict(model, displaced, task="ef", batch_size=6 * batch_size)
        for i, (structure, prediction) in enumerate(zip(chunk, plain, strict=True)):
            forces = [np.asarray(moved[6 * i + j]["f"]) for j in range(6)]
            rows.append(_row(structure, prediction, forces, *scales[i]))
    return np.array(rows)


def _predict(model, structures: list[Structure], **options) -> list[dict]:
    """CHGNet's predictions, a list even for one structure (it returns a bare dict then)."""
    with warnings.catch_warnings():  # CHGNet's own tensor-to-scalar conversion warns on every call
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad", category=UserWarning)
        result = model.predict_structure(structures, **options)
    return [result] if isinstance(result, dict) else result


def _row(structure: Structure, prediction: dict, forces: list[np.ndarray], q: np.ndarray, scale: float) -> np.ndarray:
    atom = np.asarray(prediction["atom_fea"])
    anions = anion_elements(structure.composition)
    is_anion = np.array([site.specie.symbol in anions for site in structure])
    nan = np.full(WIDTH, np.nan)
    cation_mean = atom[~is_anion].mean(axis=0) if (~is_anion).any() else nan
    cation_max = atom[~is_anion].max(axis=0) if (~is_anion).any() else nan
    anion_mean = atom[is_anion].mean(axis=0) if is_anion.any() else nan
    stress = np.asarray(prediction["s"]).reshape(3, 3)  # GPa
    scalars = [float(prediction["e"]), float(np.linalg.norm(prediction["f"], axis=1).max()),
               float(np.abs(np.asarray(prediction["m"])).max()), float(np.trace(stress) / 3),
               float(np.ptp(np.diag(stress)))]
    qq = float((q**2).sum())
    stiffness, softness = [], []
    for axis in range(3):
        kv = -(forces[2 * axis] - forces[2 * axis + 1]) / (2 * scale)  # K q along this axis, eV/Å² · e
        qkq = float(kv[:, axis] @ q)
        stiffness.append(qkq / qq)
        # (qᵀq)² / qᵀKq ≤ qᵀK⁻¹q when K is positive along q; a soft or unstable direction caps at a large value
        softness.append(qq**2 / max(qkq, 1e-3 * qq) / structure.volume)
    polar = [min(stiffness), float(np.mean(stiffness)), max(softness), float(np.mean(softness)),
             float(np.log10(max(softness))), float(np.log10(np.mean(softness)))]
    return np.concatenate([np.asarray(prediction["crystal_fea"]), cation_mean, cation_max, anion_mean,
                           scalars, polar])

