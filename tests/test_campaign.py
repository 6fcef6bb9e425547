"""Closed-loop campaigns: configuration, simulation against stored values, a real DFT campaign killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.active.campaign import campaign_status, run_campaign
from tansaku.active.campaign_config import EXAMPLE, config_from_dict, load_config
from tansaku.active.cost import EXPONENT_MIN_RUNS, CostEstimator, CostModel, cost_size, irreducible_k_points
from tansaku.active.oracles import DatasetOracle, DFTOracle
from tansaku.download import sha256_of
from tansaku.sources.generate import Prototype, parse_site_elements, store_candidates, substitute
from tansaku.store import Calculation, CampaignPick, CampaignRound, Material, Property, open_database
from tansaku.store.materials import ImportReport, add_structure_material, add_to_subset
from tansaku.store.tables import Subset
from tansaku.workflows.job import Job
from tests.cells import rocksalt
from tests.conftest import MPI_PROCS, PSEUDOS, need_shared
from tests.test_cli import invoke

WINDOW = (2.0, 3.0)


def sim_config(name: str = "sim", **changes) -> dict:
    data = {"name": name, "property": "band_gap",
            "goal": {"kind": "range", "lo": WINDOW[0], "hi": WINDOW[1]},
            "acquisition": {"strategy": "range", "batch": 5},
            "budget": {"runs": 30},
            "candidates": {"query": "subset=paper"},
            "training": {"init_random": 10},
            "model": {"learner": "et", "trees": 50, "cv_folds": 3},
            "oracle": {"kind": "dataset", "method": "import:oxi_diel_db"}}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return data


def toml_text(data: dict) -> str:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def truth(db) -> dict[int, float]:
    with db.session() as session:
        return dict(session.execute(select(Property.material_id, Property.value).where(
            Property.name == "band_gap", Property.method == "import:oxi_diel_db")).all())


def quiet(_: str) -> None:
    pass


def test_example_config_parses_and_mistakes_are_named(tmp_path):
    example = tmp_path / "example.toml"
    example.write_text(EXAMPLE)
    config = load_config(example)
    assert config.goal.kind == "range" and config.oracle == "dft" and config.budget_runs == 10
    cases = [
        ({**sim_config(), "colour": "red"}, "unknown key"),
        (sim_config(acquisition={"strategy": "magic"}), "unknown acquisition strategy 'magic'"),
        (sim_config(acquisition={"strategy": "pi-direct"}), "'pi-direct' is for simulations only"),
        (sim_config(oracle={"kind": "dataset", "method": None}), "needs \\[oracle\\] method"),
        (sim_config(oracle={"kind": "dft"}, property="e_form"), "DFT oracle computes"),
        (sim_config(training={"init_random": 0}), "needs something to learn from"),
        (sim_config(goal={"kind": "maximize"}, acquisition={"strategy": "range"}), "needs \\[goal\\] kind = 'range'"),
        (sim_config(acquisition={"cost_aware": True, "strategy": "ucb"}), "non-negative scores"),
        (sim_config(goal={"kind": "range", "lo": 3.0, "hi": 2.0}), "empty window"),
        (sim_config(goal={"kind": "range", "lo": True, "hi": 3.0}), "lo = True is not a finite number"),
        (sim_config(acquisition={"diversity": float("nan")}), "diversity = nan is not a finite number"),
        (sim_config(dft={"mpi_procs": float("inf")}), "mpi_procs = inf is not a whole number"),
        (sim_config(dft={"workers": float("nan")}), "workers = nan is not a whole number"),
        (sim_config(acquisition={"strategy": "error-model"}), "'error-model' .* needs \\[goal\\] kind = 'error'"),
        (sim_config(goal={"kind": "error"}, acquisition={"strategy": "error-model"}, model={"cv_folds": 0}),
         "cv_folds of at least 2"),
        (sim_config(model={"pretrained": str(example)}), "pretrained starts lgbm-attn's network; learner 'et'"),
        (sim_config(model={"learner": "lgbm-attn", "pretrained": "nowhere.pt"}), "nowhere.pt: no such file"),
    ]
    for data, message in cases:
        with pytest.raises(TansakuError, match=message):
            config_from_dict(data)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [unclosed")
    with pytest.raises(TansakuError, match="broken.toml: not valid TOML"):
        load_config(broken)


def test_simulated_campaign_pauses_resumes_and_spends_exactly_its_budget(oxide_db_copy):
    db = oxide_db_copy
    config = config_from_dict(sim_config())
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    paused = run_campaign(db, config, oracle, say=quiet, max_rounds=2)
    assert paused["status"] == "running" and paused["runs"] == 10
    assert all(p["reason"] == "initial random" for r in paused["rounds"] for p in r["picks"])

    status = run_campaign(db, config, oracle, say=quiet)
    assert status["status"] == "finished" and status["stop_reason"].startswith("budget spent: 30 of 30")
    picks = [p for r in status["rounds"] for p in r["picks"]]
    ids = [p["material_id"] for p in picks]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert [r["number"] for r in status["rounds"]] == [1, 2, 3, 4, 5, 6]
    values = truth(db)
    assert all(p["value"] == pytest.approx(values[p["material_id"]]) for p in picks)
    assert status["hits"] == sum(WINDOW[0] <= values[i] <= WINDOW[1] for i in ids)
    # the model of round k learned from exactly the picks of rounds before it
    for r in status["rounds"][2:]:
        assert r["model"]["n_train"] == 5 * (r["number"] - 1)
        assert "cv_mae" in r["model"] and r["model"]["expected_hits_left"] > 0
        assert all(p["reason"].startswith("range score") and p["std"] is not None for p in r["picks"])
    assert status["final_model"]["n_train"] == 30

    other_goal = config_from_dict(sim_config(goal={"kind": "range", "lo": 4.0, "hi": 5.0}))
    with pytest.raises(TansakuError, match="exists with a different goal"):
        run_campaign(db, other_goal, oracle, say=quiet)


def test_campaign_with_lgbm_attn_starts_every_round_from_the_pretrained_weights(oxide_db_copy, tmp_path):
    from tansaku.models.attention import pretrain, save_pretrained

    with oxide_db_copy.session() as session:  # any large-ish property will do for the test: the stored ε∞
        rows = session.execute(select(Material.reduced_formula, Property.value).join(Property).where(
            Property.name == "eps_electronic")).all()
    weights = tmp_path / "eps.pt"
    save_pretrained(weights, pretrain([f for f, _ in rows], [v for _, v in rows], "eps_electronic", epochs=1))
    config = config_from_dict(sim_config("attn", budget={"runs": 35}, training={"init_random": 30},
                                         model={"learner": "lgbm-attn", "pretrained": str(weights), "cv_folds": 0}))
    status = run_campaign(oxide_db_copy, config, DatasetOracle(oxide_db_copy, "band_gap", "import:oxi_diel_db"),
                          say=quiet)
    assert status["status"] == "finished" and status["runs"] == 35
    chosen = status["rounds"][-1]
    assert chosen["model"]["n_train"] == 30 and chosen["model"]["pretrained_sha256"] == sha256_of(weights)
    assert all(p["reason"].startswith("range score") and p["std"] > 0 for p in chosen["picks"])


def test_target_range_campaign_finds_more_than_random_and_stops_at_its_goal(oxide_db_copy):
    db = oxide_db_copy
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    found = {}
    for strategy in ("range", "random"):
        config = config_from_dict(sim_config(f"cmp-{strategy}", acquisition={"strategy": strategy},
                                             budget={"runs": 60}, model={"cv_folds": 0}))
        found[strategy] = run_campaign(db, config, oracle, say=quiet)["hits"]
    assert found["range"] > found["random"], found  # 322 of 1,266 in the window: random finds about 15
    goal = config_from_dict(sim_config("stop", goal={"kind": "range", "lo": 2.0, "hi": 3.0, "stop_hits": 8},
                                       budget={"runs": 200}, model={"cv_folds": 0}))
    status = run_campaign(db, goal, oracle, say=quiet)
    assert status["stop_reason"].startswith("goal met") and status["hits"] >= 8 and status["runs"] < 200


def test_several_goals_campaign_finds_what_meets_every_goal_far_more_often_than_random(oxide_db_copy, tmp_path):
    # the high-k screen: PBEsol gap ≥ 3 eV and ε_total ≥ 20 (105 of the 1,266 paper oxides)
    db = oxide_db_copy
    example = tmp_path / "goals.toml"
    example.write_text(invoke("campaign", "example", "--goals").output)
    config = load_config(example)
    assert [str(c) for c in config.goals] == ["band_gap>=3", "eps_total>=20"] and config.strategy == "joint"
    found = {}
    for name, init in (("joint", 20), ("random", 80)):  # init_random = budget: every pick at random
        data = {"name": name, "goal": [{"property": "band_gap", "lo": 3.0}, {"property": "eps_total", "lo": 20.0}],
                "acquisition": {"batch": 10}, "budget": {"runs": 80}, "candidates": {"query": "subset=paper"},
                "training": {"init_random": init}, "model": {"learner": "et", "trees": 50, "cv_folds": 0},
                "oracle": {"kind": "dataset", "method": "import:oxi_diel_db"}}
        config = config_from_dict(data)
        oracle = DatasetOracle(db, config.property, config.oracle_method, config.properties)
        status = run_campaign(db, config, oracle, say=quiet)
        picks = [p for r in status["rounds"] for p in r["picks"]]
        assert all(set(p["values"]) == {"band_gap", "eps_total"} for p in picks)
        assert all(p["hit"] == (p["values"]["band_gap"] >= 3 and p["values"]["eps_total"] >= 20) for p in picks)
        found[name] = status["hits"]
    assert found["joint"] >= 3 * max(found["random"], 1), found  # measured 33 against 7 of 80
    assert status["goals"] == ["band_gap>=3", "eps_total>=20"]
    joint = campaign_status(db, "joint")
    later = [p for r in joint["rounds"][2:] for p in r["picks"]]
    assert all(p["reason"].startswith("joint probability") for p in later)
    assert "eps_total" in joint["final_model"] and joint["final_model"]["band_gap"]["n_train"] >= 80
    plot = invoke("--db", db.url.removeprefix("sqlite:///"), "campaign", "status", "joint", "--plot",
                  str(tmp_path / "joint.png"))
    assert "(band_gap>=3, eps_total>=20)" in plot.output  # the table names every goal
    assert (tmp_path / "joint.png").stat().st_size > 20_000  # the picks on the two goals' axes
    with pytest.raises(TansakuError, match="strategy 'joint'"):
        config_from_dict({**data, "acquisition": {"strategy": "range"}})
    with pytest.raises(TansakuError, match="DFT oracle computes .*not e_form"):
        config_from_dict({**data, "goal": [{"property": "band_gap", "lo": 3}, {"property": "e_form", "hi": 0.5}],
                          "oracle": {"kind": "dft"}})
    with pytest.raises(TansakuError, match="number 1: unknown key"):
        config_from_dict({**data, "goal": [{"property": "band_gap", "lo": 3, "stop_hits": 2}]})


def test_failed_candidates_are_recorded_never_chosen_again_and_budget_can_grow(oxide_db_copy, tmp_path):
    db = oxide_db_copy
    values = truth(db)
    with db.session() as session:
        protos = [Prototype("MgO", rocksalt(4.21, "Mg", "O"))]
        known = sorted(values)[:2]
    candidates, _ = substitute(protos, parse_site_elements("A=Ca"), anion="Se")
    store_candidates(db, candidates, protos, subset="trial")  # CaSe: no stored band gap, the oracle fails
    with db.session() as session:
        add_to_subset(session, "trial", known)
    data = sim_config("trial", candidates={"query": "subset=trial"}, training={"init_random": 3},
                      budget={"runs": 3}, acquisition={"batch": 3}, model={"cv_folds": 0})
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    status = run_campaign(db, config_from_dict(data), oracle, say=quiet)
    outcomes = {p["formula"]: p for p in status["rounds"][0]["picks"]}
    assert outcomes["CaSe"]["status"] == "failed" and "no stored band_gap" in outcomes["CaSe"]["detail"]
    assert status["outcomes"] == {"done": 2, "metal": 0, "failed": 1, "pending": 0}
    data["budget"] = {"runs": 6}  # a larger budget continues the same campaign ...
    more = run_campaign(db, config_from_dict(data), oracle, say=quiet)
    assert more["runs"] == 3 and more["stop_reason"] == "no candidates left"  # ... and never re-picks CaSe


def test_a_metal_screen_keeps_likely_metals_out_of_a_campaign(oxide_db_copy, tmp_path):
    """Rock-salt TiO is charge-balanced (Ti2+ O2-; `generate` refuses Ti2+ as uncommon, but a candidate can come
    from any CIF) and looks like any other oxide to an ε or gap model trained on insulators; a campaign given a
    gap table with metals in it ([candidates] metal_screen) never spends a run on it, picks every other
    candidate, and says in each round how many it left out."""
    from tansaku.models.metal_screen import FLAG_PROBABILITY, MetalScreen
    from tests.conftest import matbench_gap_sample

    db = oxide_db_copy
    table = matbench_gap_sample(tmp_path)
    rock_salt = Prototype("MgO", rocksalt(4.21, "Mg", "O"))
    candidates, _ = substitute([rock_salt], parse_site_elements("A=Cd,Sn,Pb"), anion="O")
    store_candidates(db, candidates, [rock_salt], subset="trial")
    with db.session() as session:
        tio = rocksalt(4.18, "Ti", "O")
        material, _ = add_structure_material(session, tio, "generated", "TiO-rocksalt", ImportReport())
        session.flush()
        add_to_subset(session, "trial", [material.id])
    with db.session() as session:
        stored = list(session.scalars(select(Material.reduced_formula).join(
            Subset, Subset.material_id == Material.id).where(Subset.name == "trial")))
    likely_metals = {f for f, p in zip(stored, MetalScreen.from_table(table).probabilities(stored), strict=True)
                     if p >= FLAG_PROBABILITY}
    assert "TiO" in likely_metals and len(likely_metals) < len(stored)
    data = sim_config("screened", candidates={"query": "subset=trial", "metal_screen": str(table)},
                      training={"query": "subset=paper", "init_random": 0}, budget={"runs": 20},
                      acquisition={"batch": 2}, model={"cv_folds": 0})
    status = run_campaign(db, config_from_dict(data), DatasetOracle(db, "band_gap", "import:oxi_diel_db"),
                          say=quiet)
    picked = [p["formula"] for r in status["rounds"] for p in r["picks"]]
    assert sorted(picked) == sorted(set(stored) - likely_metals)  # every other candidate, each once
    assert status["stop_reason"] == "no candidates left"
    assert status["rounds"][0]["model"]["screened_metals"] == len(likely_metals)
    with pytest.raises(TansakuError, match="metal_screen: nowhere.csv: no such file"):
        config_from_dict(sim_config(candidates={"metal_screen": "nowhere.csv"}))


def test_cli_run_and_status_with_plot(oxide_db_copy, tmp_path):
    db_path = oxide_db_copy.url.removeprefix("sqlite:///")
    config = tmp_path / "sim.toml"
    config.write_text(toml_text(sim_config("cli", budget={"runs": 15}, model={"cv_folds": 0})))
    result = invoke("--db", db_path, "campaign", "run", str(config))
    assert result.exit_code == 0, result.output
    assert "budget spent: 15 of 15 runs" in result.output
    plot, out = tmp_path / "c.png", tmp_path / "c.json"
    result = invoke("--db", db_path, "campaign", "status", str(config), "--plot", str(plot), "--json", str(out))
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 10_000
    status = json.loads(out.read_text())
    assert status["runs"] == 15 and len(status["rounds"]) == 3
    # the summary reads as words, not as a Python dict; a simulation is not called DFT
    assert "outcomes: 15 done" in result.output and "{'done'" not in result.output
    assert status["oracle"] == "dataset"
    judged = [p for r in status["rounds"] for p in r["picks"] if p["mean"] is not None]
    assert judged and all(p["predicted_low"] <= p["predicted"] <= p["predicted_high"] for p in judged)
    with pytest.raises(TansakuError, match="no campaign named 'nope' \\(campaigns: cli\\)"):
        invoke("--db", db_path, "campaign", "status", "nope")


def test_run_dielectric_estimate_prints_each_cost_and_runs_nothing(tmp_path, oxi_dir):
    from tansaku.active.cost import prior_scale
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import preset

    db = str(tmp_path / "estimate.db")
    mini = tmp_path / "mini" / "data"
    mini.mkdir(parents=True)
    for name in ("mp-1265.json", "mp-1342.json"):  # MgO (gap 4.66 eV), BaO (1.86 eV: below small_gap_ev)
        (mini / name).write_bytes((oxi_dir / "data" / name).read_bytes())
    assert invoke("--db", db, "import", "oxi-diel-db", str(mini.parent)).exit_code == 0
    bad, out = tmp_path / "bad.cif", tmp_path / "estimate.json"
    bad.write_text("data_nothing\n")
    pseudo_dir = need_shared(PSEUDOS)
    result = invoke("--db", db, "run", "dielectric", str(bad), "--ids", "1", "--ids", "2", "--estimate",
                    "--mpi-procs", str(MPI_PROCS), "--pseudo-dir", str(pseudo_dir), "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "Total:" in result.output and "prior" in result.output  # nothing has finished: the preset's prior
    estimate = json.loads(out.read_text())
    mgo, bao, broken = (estimate["materials"][key] for key in ("1", "2", str(bad)))
    settings, pseudos = preset("standard"), load_family(pseudo_dir)
    with open_database(db).session() as session:
        structures = {m.reduced_formula: m.structure() for m in session.scalars(select(Material))}
        assert session.scalars(select(Calculation)).all() == []  # nothing ran
    assert (mgo["formula"], mgo["atoms"], mgo["kmesh"], mgo["k_points"], mgo["probes"]) == ("MgO", 2, [8, 8, 8], 29,
                                                                                            False)
    assert bao["probes"] and bao["stored_gap"] == pytest.approx(1.8633)
    for row in (mgo, bao):
        size = cost_size(structures[row["formula"]], settings, pseudos, row["stored_gap"])
        assert row["cpu_hours"] == pytest.approx(prior_scale("standard") * size, rel=1e-9)
    assert broken["cpu_hours"] is None and "bad.cif" in broken["reason"]
    assert estimate["total_cpu_hours"] == pytest.approx(mgo["cpu_hours"] + bao["cpu_hours"])
    with pytest.raises(TansakuError, match="--estimate goes with `tansaku run dielectric`"):
        invoke("--db", db, "run", "electronic", "--ids", "1", "--estimate", "--pseudo-dir", str(pseudo_dir))


def test_cost_model_calibration():
    assert CostModel.calibrate([], []).n_runs == 0
    assert CostModel.calibrate([], [], prior=2e-11).scale == 2e-11  # no finished run: the preset's prior
    two = CostModel.calibrate([1e9, 2e9], [0.1, 0.3])
    assert two.exponent == 1.0 and two.scale == pytest.approx(1.5**0.5 * 1e-10)  # median in log space of 1e-10, 1.5e-10
    enough = EXPONENT_MIN_RUNS
    sizes = [1e8 * 1.5**i for i in range(enough)]
    fit = CostModel.calibrate(sizes, [3e-12 * s**1.2 for s in sizes])
    assert fit.exponent == pytest.approx(1.2) and fit.hours(1e12) == pytest.approx(3e-12 * 1e12**1.2)
    # one run fewer, or as many within a factor of ten, cannot tell the exponent from noise: it stays 1
    assert CostModel.calibrate(sizes[:-1], [3e-12 * s**1.2 for s in sizes[:-1]]).exponent == 1.0
    narrow = [1e9 * 1.1**i for i in range(enough)]
    assert CostModel.calibrate(narrow, [3e-12 * s**1.2 for s in narrow]).exponent == 1.0


def test_cost_size_counts_the_irreducible_k_points_pw_computes():
    mgo = rocksalt(4.21, "Mg", "O")
    primitive = mgo.get_primitive_structure()
    # pw.x reports 8 k-points for MgO's 4x4x4 mesh and 29 for 8x8x8 (48 operations, time reversal)
    assert irreducible_k_points(primitive, (4, 4, 4)) == 8 and irreducible_k_points(primitive, (8, 8, 8)) == 29
    distorted = primitive.copy()
    distorted.translate_sites([1], [0.03, 0.01, 0.0])  # no operation left but the identity
    # time reversal alone: k and -k pair up, except the 8 points that are their own partner
    assert irreducible_k_points(distorted, (4, 4, 4)) == (64 - 8) // 2 + 8
    assert irreducible_k_points(primitive, (1, 1, 1)) == 1


def test_cost_size_charges_each_step_by_its_perturbations_and_bands():
    from tansaku.active.cost import DFPT_TRIPLE_IN_SCFS, FIELD_IN_TRIPLES, ORTHO_PER_FFT, RELAX_IN_SCFS
    from tansaku.dft.memory import BOHR, fft_grid
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import kmesh, preset

    settings, pseudos = preset("standard"), load_family(need_shared(PSEUDOS))
    mgo = rocksalt(4.21, "Mg", "O")
    cell = mgo.get_primitive_structure()
    points = irreducible_k_points(cell, kmesh(cell, settings.kspacing, True))
    # standard preset: 80 Ry wave functions, a 320 Ry density grid of 36³ points (what pw.x prints for MgO)
    assert fft_grid(cell, 320.0) == (36, 36, 36)
    plane_waves = cell.volume / BOHR**3 * 80.0**1.5 / (6 * np.pi**2)

    def work(bands: float) -> float:
        return bands * 36**3 + ORTHO_PER_FFT * plane_waves * bands**2

    # 16 valence electrons (Mg with its 2s2p semicore, O): 8 occupied bands, 8 + extra_bands in the SCF;
    # ph.x moves 2 atoms (two triples) and the electric field (FIELD_IN_TRIPLES) on the occupied bands
    expected = points * (work(8 + settings.extra_bands) * (RELAX_IN_SCFS + 1)
                         + work(8) * DFPT_TRIPLE_IN_SCFS * (2 + FIELD_IN_TRIPLES))
    assert cost_size(mgo, settings, pseudos) == pytest.approx(expected, rel=1e-9)


def test_step_ratios_read_back_the_weights_a_run_was_made_with():
    """A whole ph.x, and a small gap's probes and displacements on their own meshes, each give the weights back."""
    from tansaku.active.cost import ComputedCell, StepWeights, step_ratios
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import kmesh, preset
    from tansaku.workflows.kmesh_convergence import displacements_name, probe_name

    settings, pseudos = preset("standard"), load_family(need_shared(PSEUDOS))
    bao = rocksalt(5.54, "Ba", "O")
    cell = ComputedCell.of(bao, settings, pseudos)
    fixed, denser = kmesh(cell.structure, settings.kspacing), (8, 8, 8)
    assert fixed == (6, 6, 6)
    unit = 1e-9  # CPU seconds per unit of work

    def scf(mesh):
        return unit * cell.points(mesh) * cell.scf_work

    def dfpt(mesh, triples):
        return unit * cell.points(mesh) * cell.dfpt_work * 9.0 * triples

    whole = {"relax": 4.0 * scf(fixed), "scf": scf(fixed), "phonon": dfpt(fixed, 2 + 1.5)}
    assert step_ratios(whole, bao, settings, pseudos) == pytest.approx((4.0, 9.0, np.nan), nan_ok=True)
    small = {"relax": 6.0 * scf(fixed), "scf": scf(fixed), f"{probe_name(fixed)}-eps": dfpt(fixed, 1.8),
             f"{probe_name(denser)}-scf": scf(denser), f"{probe_name(denser)}-eps": dfpt(denser, 1.8),
             displacements_name(denser): dfpt(denser, 2)}
    ratios = step_ratios(small, bao, settings, pseudos)
    assert ratios == pytest.approx((6.0, 9.0, 1.8))
    learned = StepWeights.learn([ratios, ratios, step_ratios(whole, bao, settings, pseudos)])
    assert (learned.relax, learned.dfpt_triple, learned.field_runs) == (6.0, pytest.approx(9.0), 0)
    assert step_ratios({"relax": 1.0}, bao, settings, pseudos) == pytest.approx((np.nan,) * 3, nan_ok=True)


def test_step_weights_are_learned_from_enough_finished_runs():
    from tansaku.active.cost import DFPT_TRIPLE_IN_SCFS, RELAX_IN_SCFS, StepRatios, StepWeights

    prior = StepWeights()
    assert (prior.relax, prior.dfpt_triple, prior.relax_runs) == (RELAX_IN_SCFS, DFPT_TRIPLE_IN_SCFS, 0)
    runs = [StepRatios(2.0, 7.0), StepRatios(3.0, 9.0), StepRatios(dfpt_triple=8.0), StepRatios(10.0)]
    learned = StepWeights.learn(runs)  # a run without a relaxation time, one without ph.x
    assert (learned.relax, learned.relax_runs) == (3.0, 3)
    assert (learned.dfpt_triple, learned.dfpt_runs) == (8.0, 3)
    assert StepWeights.learn(runs[:2]).dfpt_triple == DFPT_TRIPLE_IN_SCFS  # two runs: the prior stays
    assert StepWeights.learn(runs[:2], min_runs=2).dfpt_triple == 8.0


def test_cost_size_scales_each_step_by_its_weight():
    from tansaku.active.cost import RELAX_IN_SCFS, StepWeights
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import preset

    settings, pseudos = preset("standard"), load_family(need_shared(PSEUDOS))
    mgo = rocksalt(4.21, "Mg", "O")
    gap = cost_size(mgo, settings, pseudos, gap_only=True)  # relaxation and SCF: scf × (relax + 1)
    twice = StepWeights(relax=2 * RELAX_IN_SCFS + 1)
    assert cost_size(mgo, settings, pseudos, gap_only=True, weights=twice) == pytest.approx(2 * gap)
    phonons = cost_size(mgo, settings, pseudos) - gap
    doubled = cost_size(mgo, settings, pseudos, weights=StepWeights(dfpt_triple=2 * StepWeights().dfpt_triple))
    assert doubled == pytest.approx(gap + 2 * phonons)


def test_a_known_small_gap_charges_the_probes_and_the_denser_mesh():
    from tansaku.active.cost import (
        DFPT_TRIPLE_IN_SCFS,
        FIELD_IN_TRIPLES,
        RELAX_IN_SCFS,
        ComputedCell,
        settling_mesh,
    )
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import kmesh, preset
    from tansaku.workflows.kmesh_convergence import probe_spacings

    bao = rocksalt(5.54, "Ba", "O")
    settings, pseudos = preset("standard"), load_family(need_shared(PSEUDOS))
    wide = cost_size(bao, settings, pseudos)
    assert cost_size(bao, settings, pseudos, gap=settings.small_gap_ev + 0.1) == wide  # the rule does not run
    small = cost_size(bao, settings, pseudos, gap=1.8)
    split = cost_size(bao, preset("standard", {"small_gap_split": True}), pseudos, gap=1.8)
    cell = ComputedCell.of(bao, settings, pseudos)

    def steps(coarsest: float, meshes: int = 3) -> tuple[list[float], list[float], list[float]]:
        """Per probe mesh: its SCF, a displacement triple, and the probe (SCF and field-only ph.x)."""
        points = [cell.points(kmesh(cell.structure, s, True))
                  for s in probe_spacings(cell.structure, coarsest)[:meshes]]
        scf = [p * cell.scf_work for p in points]
        triple = [p * cell.dfpt_work * DFPT_TRIPLE_IN_SCFS for p in points]
        return scf, triple, [s + FIELD_IN_TRIPLES * t for s, t in zip(scf, triple, strict=True)]

    scf, triple, probes = steps(settings.kspacing)
    # the mean of settling on the first mesh (two probes, then the 2 displacement triples there: the fixed mesh)
    # and on the second (three probes, the displacements there): the probe gave ε∞ and Z*. `wide` is the fixed
    # mesh's relaxation, SCF and whole ph.x; a small gap runs the probes and displacements instead of that ph.x
    whole_phonon = (2 + FIELD_IN_TRIPLES) * triple[0]
    probes[0] -= scf[0]  # the first probe's SCF is the workflow's own
    first, second = sum(probes[:2]) + 2 * triple[0], sum(probes) + 2 * triple[1]
    assert small - wide == pytest.approx((first + second) / 2 - whole_phonon, rel=1e-9)
    assert small > 2 * wide
    # small_gap_split: the displacements on the fixed mesh whichever mesh settled
    second = sum(probes) + 2 * triple[0]
    assert split - wide == pytest.approx((first + second) / 2 - whole_phonon, rel=1e-9)
    # a smaller gap settles on a finer mesh: below 1.64 eV (0.25 Å⁻¹ × √gap under the second spacing) the mean of
    # settling on the second and the third mesh
    spacings = probe_spacings(cell.structure, settings.kspacing)
    assert settling_mesh(spacings, 1.8) == 1 and settling_mesh(spacings, 1.2) == 2
    assert settling_mesh(spacings, 0.05) == len(spacings) - 1  # never past the last mesh
    scf, triple, probes = steps(settings.kspacing, meshes=4)
    probes[0] -= scf[0]
    second, third = sum(probes[:3]) + 2 * triple[1], sum(probes) + 2 * triple[2]
    smaller = cost_size(bao, settings, pseudos, gap=1.2)
    assert smaller - wide == pytest.approx((second + third) / 2 - whole_phonon, rel=1e-9)
    assert cost_size(bao, settings, pseudos, gap=0.6) > smaller > small
    turned_off = preset("standard", {"small_gap_ev": 0})
    assert cost_size(bao, turned_off, pseudos, gap=1.8) == cost_size(bao, turned_off, pseudos)
    # the convergence mode probes every material first, from k_coarsest, then runs everything on the mesh chosen
    measured = preset("standard", {"k_converge": 0.01})
    scf, triple, probes = steps(measured.k_coarsest)
    courses = [sum(probes[: i + 2]) + scf[i] * (RELAX_IN_SCFS + 1) + (2 + FIELD_IN_TRIPLES) * triple[i]
               for i in (0, 1)]
    assert cost_size(bao, measured, pseudos) == pytest.approx(sum(courses) / 2, rel=1e-9)
    assert cost_size(bao, measured, pseudos, gap=1.8) == cost_size(bao, measured, pseudos)
    assert cost_size(bao, measured, pseudos, gap_only=True) == cost_size(bao, settings, pseudos, gap_only=True)


# ---- with Quantum ESPRESSO -------------------------------------------------------------------------------

def dft_section(tmp_path: Path) -> dict:
    return {"preset": "test", "pseudo_dir": str(need_shared(PSEUDOS)), "mpi_procs": MPI_PROCS,
            "run_dir": str(tmp_path / "runs")}


def test_metallic_candidate_is_recorded_and_never_chosen_again(quantum_espresso, tmp_path):
    db = open_database(tmp_path / "metal.db")
    odd = rocksalt(5.0, "K", "O")
    # rock-salt "KO" (K1+ with O2-): one hole per formula unit, so the relaxation finds it metallic
    with db.session() as session:
        material, _ = add_structure_material(session, odd, "file", "KO.cif", ImportReport())
        add_to_subset(session, "odd", [material.id])
    data = {"name": "metal", "property": "band_gap", "goal": {"kind": "range", "lo": 2.0, "hi": 3.0},
            "budget": {"runs": 3}, "candidates": {"query": "subset=odd"}, "training": {"init_random": 1},
            "oracle": {"kind": "dft"}, "dft": dft_section(tmp_path)}
    config = config_from_dict(data)
    ctx = config.dft.context(db)
    status = run_campaign(db, config, DFTOracle(ctx, "band_gap"), say=quiet)
    (pick,) = status["rounds"][0]["picks"]
    assert pick["status"] == "metal" and "below the metal threshold" in pick["detail"]
    assert pick["value"] == pytest.approx(0.0, abs=0.1)  # for a band-gap search a metal is a valid label
    assert status["stop_reason"] == "no candidates left" and status["runs"] == 1


def campaign_killed_in_round_2(db, config_file: Path, runs: Path, steps: tuple[str, ...], wait: float = 900
                               ) -> tuple[list[str], Path]:
    """Start `campaign run` in a session of its own; once one of `steps` of a round-2 pick is running under QE,
    SIGKILL the controller and that QE run. The command to resume with, and the killed step's state. (Name
    steps that last: a step of seconds may finish between the look and the kill, and is then rightly kept.)"""
    argv = [sys.executable, "-c", "from tansaku.cli.app import main; main()", "--db",
            db.url.removeprefix("sqlite:///"), "campaign", "run", str(config_file)]
    process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, state_file = time.time() + wait, None
    while time.time() < deadline and state_file is None:
        assert process.poll() is None, f"the campaign ended before a round-2 {' or '.join(steps)} step ran"
        with db.session() as session:
            second = list(session.scalars(select(CampaignPick.material_id).join(CampaignRound).where(
                CampaignRound.number == 2)))
        for material_id, step in ((m, s) for m in second for s in steps):
            for found in runs.glob(f"{material_id}-*/{step}/state.json"):
                state = json.loads(found.read_text())
                if state["status"] == "running" and state.get("job_id"):
                    state_file = found
        time.sleep(0.3)
    assert state_file is not None, f"round 2 never ran a {' or '.join(steps)} step"
    time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)  # the controller, and the QE run in its own process group
    os.killpg(int(json.loads(state_file.read_text())["job_id"]), signal.SIGKILL)
    process.wait()
    return argv, state_file


def test_real_campaign_killed_mid_calculation_resumes_without_repeating(quantum_espresso, oxide_db_copy, tmp_path):
    """Two rounds of one DFT run each on generated rock-salt sulfides; SIGKILL inside round 2's ph.x."""
    db = oxide_db_copy
    protos = [Prototype("MgO", rocksalt(4.21, "Mg", "O").get_primitive_structure())]
    candidates, _ = substitute(protos, parse_site_elements("A=Ca,Sr,Ba"), anion="S")
    assert store_candidates(db, candidates, protos, subset="sulfides") == []
    # a goal on ε∞ (a gap alone would need no ph.x, the step to kill): CaS, SrS and BaS have ε∞ near 4-5
    data = {"name": "sulfides", "property": "eps_electronic", "goal": {"kind": "range", "lo": 4.0, "hi": 6.0},
            "acquisition": {"batch": 1}, "budget": {"runs": 2}, "candidates": {"query": "subset=sulfides"},
            "training": {"query": "subset=paper"}, "model": {"trees": 50, "cv_folds": 0},
            "oracle": {"kind": "dft"}, "dft": dft_section(tmp_path)}
    config_file = tmp_path / "sulfides.toml"
    # into [dft], the last table: a low cutoff and a 3x3x3 mesh (8 → 4 irreducible k-points for ph.x): CI minutes
    config_file.write_text(toml_text(data) + "set = { ecutwfc = 40, even_kmesh = false }\n")
    argv, _ = campaign_killed_in_round_2(db, config_file, tmp_path / "runs", ("phonon",), 400)
    with db.session() as session:
        assert session.scalar(select(CampaignRound.status).where(CampaignRound.number == 2)) == "computing"

    finished = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    status = campaign_status(db, "sulfides")
    assert status["status"] == "finished" and status["runs"] == 2
    assert [r["status"] for r in status["rounds"]] == ["done", "done"]
    picked = [p["material_id"] for r in status["rounds"] for p in r["picks"]]
    assert len(set(picked)) == 2 and all(p["status"] == "done" for r in status["rounds"] for p in r["picks"])
    with db.session() as session:
        gaps = dict(session.execute(select(Property.material_id, Property.value).where(
            Property.name == "band_gap", Property.method == "dft:qe:test")).all())
        eps = dict(session.execute(select(Property.material_id, Property.value).where(
            Property.name == "eps_electronic", Property.method == "dft:qe:test")).all())
        assert sorted(gaps) == sorted(eps) == sorted(picked)  # exactly the two DFT results, no more
        assert all(1.0 < g < 5.0 for g in gaps.values())  # rock-salt sulfides are insulators
        assert all(3.0 < e < 8.0 for e in eps.values())
        rows = session.execute(select(Calculation.material_id, Calculation.step, Calculation.attempts)).all()
    assert len(rows) == 8  # four steps (relax, scf, phonon, analysis) per material, no duplicates
    attempts = {(m, s): a for m, s, a in rows}
    assert all(attempts[(picked[0], s)] == 1 for s in ("relax", "scf", "phonon"))  # round 1 not recomputed
    assert attempts[(picked[1], "phonon")] == 2  # the killed ph.x ran again
    assert status["cpu_hours"] > 0


def test_cost_aware_ranking_prefers_cheap_candidates(oxide_db_copy):
    """Same goal and seed; ranking by score per estimated CPU hour picks smaller cells."""
    db = oxide_db_copy
    dft = {"preset": "test", "pseudo_dir": str(need_shared(PSEUDOS))}
    costs = CostEstimator(db, Job.from_table(dft).context(db))
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    mean_cost = {}
    for aware in (False, True):
        config = config_from_dict(sim_config(f"cost-{aware}", acquisition={"cost_aware": aware},
                                             training={"init_random": 20}, budget={"runs": 40},
                                             candidates={"query": "subset=paper;max_sites=20"},
                                             model={"cv_folds": 0}, dft=dft))
        status = run_campaign(db, config, oracle, costs=costs, say=quiet)
        chosen = [p["cost_estimate"] for r in status["rounds"][4:] for p in r["picks"]]
        if aware:  # materials with an empty pseudopotential file (W, Pt in the shared family) have no estimate
            assert all(c is not None and c > 0 for c in chosen)
        chosen = [c for c in chosen if c is not None]
        mean_cost[aware] = sum(chosen) / len(chosen)
    assert mean_cost[True] < 0.5 * mean_cost[False], mean_cost


def test_model_error_goal_stops_when_cross_validated_error_is_low_enough(oxide_db_copy):
    db = oxide_db_copy
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    data = sim_config("error", goal={"kind": "error", "stop_value": 5.0}, acquisition={"strategy": "uncertainty"},
                      training={"init_random": 10}, budget={"runs": 100}, model={"cv_folds": 3})
    status = run_campaign(db, config_from_dict(data), oracle, say=quiet)
    # rounds 1-2 are the random start (no model); round 3 has a CV MAE below 5 eV, so the loop stops after it
    assert status["stop_reason"].startswith("goal met: cross-validated MAE")
    assert status["runs"] == 15 and status["rounds"][2]["model"]["cv_mae"] < 5.0
    assert status["hits"] == 0  # a model-error goal has no targets


def test_error_model_campaign_draws_where_cross_validated_errors_are_large(oxide_db_copy):
    db = oxide_db_copy
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    data = sim_config("err", goal={"kind": "error"}, acquisition={"strategy": "error-model", "batch": 5},
                      training={"init_random": 10}, budget={"runs": 20}, model={"cv_folds": 3})
    status = run_campaign(db, config_from_dict(data), oracle, say=quiet)
    assert status["runs"] == 20 and len({p["material_id"] for r in status["rounds"] for p in r["picks"]}) == 20
    drawn = [p["reason"] for r in status["rounds"][2:] for p in r["picks"]]
    assert len(drawn) == 10 and all(r.startswith("error-model: predicted error ") for r in drawn), drawn
    errors = [float(r.rsplit(" ", 1)[1]) for r in drawn]
    assert min(errors) > 0 and len(set(errors)) > 1  # a per-candidate model, not a constant
    # with fewer out-of-fold residuals than the error model needs, the first model round draws ∝ tree spread
    few = run_campaign(db, config_from_dict({**data, "name": "err-few", "training": {"init_random": 6},
                                             "budget": {"runs": 11}}), oracle, say=quiet)
    assert [p["reason"].startswith("error-model (too few labels") for p in few["rounds"][-1]["picks"]] == [True] * 5


def test_stop_reasons_cover_runs_cpu_hours_hits_and_values():
    from tansaku.active.campaign import stop_reason

    def used(runs=0, cpu=0.0, hits=0, model=None):
        return {"runs": runs, "cpu_hours": cpu, "hits": hits, "last_model": model or {}}

    config = config_from_dict(sim_config(budget={"runs": 10, "cpu_hours": 1.5}, goal={"stop_hits": 3}))
    assert stop_reason(config, used(runs=3, cpu=1.0, hits=2)) is None
    assert stop_reason(config, used(runs=10)) == "budget spent: 10 of 10 runs"
    assert stop_reason(config, used(runs=4, cpu=2.0)) == "budget spent: 2.00 of 1.5 CPU hours"
    assert stop_reason(config, used(runs=4, hits=3)) == "goal met: 3 materials found"
    maximize = config_from_dict(sim_config(goal={"kind": "maximize", "lo": None, "hi": None, "stop_value": 6.0},
                                           acquisition={"strategy": "ei"}))
    assert stop_reason(maximize, used(runs=2)) is None
    assert stop_reason(maximize, used(runs=2, hits=1)) == "goal met: a value beyond 6.0 was found"


def test_a_running_campaign_is_not_run_twice_but_a_dead_runner_is_taken_over(oxide_db_copy):
    import socket

    from tansaku.active.campaign import open_campaign
    from tansaku.store import Campaign
    from tansaku.store.tables import utcnow

    db = oxide_db_copy
    config = config_from_dict(sim_config("locked", budget={"runs": 10}, model={"cv_folds": 0}))
    oracle = DatasetOracle(db, "band_gap", "import:oxi_diel_db")
    campaign_id = open_campaign(db, config)
    dead = subprocess.Popen(["true"])
    dead.wait()
    for runner, refused in ((f"{socket.gethostname()}:{os.getppid()}", True),  # our parent: alive
                            (f"{socket.gethostname()}:{dead.pid}", False)):
        with db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            campaign.runner, campaign.heartbeat = runner, utcnow()
        if refused:
            with pytest.raises(TansakuError, match=f"is being run by {runner}"):
                run_campaign(db, config, oracle, say=quiet)
        else:
            assert run_campaign(db, config, oracle, say=quiet)["runs"] == 10
    with db.session() as session:
        assert session.get(Campaign, campaign_id).runner is None  # released at the end
