"""Several goals at once: the condition syntax, the joint probability, and a simulation where meeting both goals
is rare and asking for both finds more than asking for one or for nothing."""

from __future__ import annotations

import csv
from itertools import pairwise

import numpy as np
import pytest
from scipy.stats import norm

from tansaku import TansakuError
from tansaku.active.multigoal import Condition, MultiSetup, joint_probability, run_multigoal


def test_conditions_parse_and_mistakes_are_named():
    assert Condition.parse("band_gap>=3") == Condition("band_gap", lo=3.0)
    assert Condition.parse(" m_e < 0.5 ") == Condition("m_e", hi=0.5)
    assert Condition.parse("band_gap_hse06=2.2:2.6") == Condition("band_gap_hse06", 2.2, 2.6)
    assert str(Condition.parse("eps_total>=20")) == "eps_total>=20"
    for text, message in (("band_gap", "is not property>=LO"), ("band_gap=2.6:2.2", "empty window"),
                          ("band_gap=2", "needs both ends"), ("band_gap>=2:3", "goes with '='"),
                          ("band_gap>=two", "is not a number"), ("band_gap>=nan", "nan is not a finite number"),
                          ("band_gap=-inf:3", "-inf is not a finite number")):
        with pytest.raises(TansakuError, match=message):
            Condition.parse(text)


def test_probabilities_in_model_units_and_their_product():
    mean, std = np.array([1.0, np.log10(20.0), 2.0]), np.array([0.1, 0.2, 0.1])
    at_least_20 = Condition("eps_total", lo=20.0)
    assert at_least_20.probability(mean, std, "log10") == pytest.approx([norm.cdf((1 - np.log10(20)) / 0.1), 0.5,
                                                                         norm.cdf((2 - np.log10(20)) / 0.1)])
    assert Condition("x", lo=-1.0).probability(mean, std, "log10") == pytest.approx([1, 1, 1])
    window = Condition("band_gap", 2.2, 2.6)
    gap_mean, gap_std = np.array([2.4, 3.0, 2.4]), np.array([0.1, 0.1, 1.0])
    p_window = window.probability(gap_mean, gap_std)
    assert p_window[0] > 0.95 and p_window[1] < 0.001 and 0.1 < p_window[2] < 0.2
    joint = joint_probability([at_least_20, window], {"eps_total": (mean, std, "log10"),
                                                      "band_gap": (gap_mean, gap_std, "none")})
    assert joint == pytest.approx(at_least_20.probability(mean, std, "log10") * p_window)


def test_asking_for_both_goals_finds_more_than_one_goal_or_none():
    rng = np.random.default_rng(3)
    X = rng.random((600, 5))
    values = {"a": 3 * X[:, 0] + 0.05 * rng.standard_normal(600),
              "b": 10 ** (X[:, 1] + 0.6 + 0.02 * rng.standard_normal(600))}
    setup = MultiSetup(X, values, [Condition("a", lo=2.2), Condition("b", lo=20.0)], init=10, batch=10,
                       budget=100, seeds=1, trees=50)
    setup.check()
    assert 15 <= setup.targets().sum() <= 60
    found = {s: run_multigoal(setup, s, seed=0)["found"][-1] for s in ("joint", "random", "single:a")}
    assert found["joint"] >= 2 * found["random"] and found["joint"] > found["single:a"] and found["joint"] >= 10
    with pytest.raises(TansakuError, match="unknown multi-goal strategy"):
        run_multigoal(setup, "ei", seed=0)
    with pytest.raises(TansakuError, match="no values of it"):
        MultiSetup(X, values, [Condition("c", lo=1.0)]).check()
    # a variant's own acquisition replaces the strategy's: one that knows the answers labels only targets
    knows = run_multigoal(setup, "joint", seed=0, scores=lambda s, labelled, candidates, seed:
                          s.targets()[candidates].astype(float))
    total = int(setup.targets().sum())
    assert all(after == min(before + 10, total) for before, after in pairwise(knows["found"]))


def test_al_simulate_with_two_goals_on_the_oxides(oxide_db_copy, tmp_path):
    import json
    import sqlite3

    from tests.test_cli import invoke

    db = oxide_db_copy.url.removeprefix("sqlite:///")
    out = tmp_path / "goals.json"
    result = invoke("--db", db, "al", "simulate", "--goal", "band_gap>=3", "--goal", "eps_total>=20", "--subset",
                    "paper", "--strategy", "joint", "--strategy", "random", "--init", "20", "--batch", "20",
                    "--budget", "100", "--seeds", "1", "--trees", "20", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    with sqlite3.connect(db) as connection:  # the targets counted without our code
        (expected,) = connection.execute(
            "SELECT count(*) FROM subsets s JOIN properties g ON g.material_id = s.material_id AND g.name = "
            "'band_gap' JOIN properties e ON e.material_id = s.material_id AND e.name = 'eps_electronic' JOIN "
            "properties i ON i.material_id = s.material_id AND i.name = 'eps_ionic' WHERE s.name = 'paper' AND "
            "g.value >= 3 AND e.value + i.value >= 20").fetchone()
    assert data["n_targets"] == expected and data["goals"] == ["band_gap>=3", "eps_total>=20"]
    (joint,), (random,) = data["strategies"]["joint"], data["strategies"]["random"]
    assert joint["evaluated"] == random["evaluated"] == [20, 40, 60, 80, 100]
    assert joint["found"][0] == random["found"][0]  # the same start
    with pytest.raises(TansakuError, match="reads the database's values"):
        invoke("--db", db, "al", "simulate", "--goal", "band_gap>=3", "--range", "1", "2")
    with pytest.raises(TansakuError, match="no material has property 'nothing'"):
        invoke("--db", db, "al", "simulate", "--goal", "nothing>=3")


def test_al_suggest_with_two_goals_ranks_by_the_joint_probability(oxide_db_copy, tmp_path):
    import json

    from pymatgen.core import Lattice, Structure
    from sqlalchemy import select

    from tansaku.models.predictor import Predictor
    from tansaku.store.materials import set_property
    from tansaku.store.tables import Material, Subset
    from tests.test_cli import invoke

    db = oxide_db_copy.url
    models = {prop: str(tmp_path / f"{prop}.pkl") for prop in ("band_gap", "eps_electronic")}
    for prop, path in models.items():
        assert invoke("--db", db, "train", "--property", prop, "--model", "et", "--cv", "0",
                      "--out", path).exit_code == 0
    structures = {}
    for name, (a, b) in {"BaHfO3": ("Ba", "Hf"), "SrZrO3": ("Sr", "Zr"), "CaSnO3": ("Ca", "Sn")}.items():
        structures[name] = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.1), [a, b, "O"],
                                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
        structures[name].to(filename=str(tmp_path / f"{name}.cif"))
        assert invoke("--db", db, "import", "structures", str(tmp_path / f"{name}.cif")).exit_code == 0
    with oxide_db_copy.session() as session:  # BaHfO3's gap is known: its gap goal is certain, not predicted
        bahfo3 = session.scalars(select(Material).where(Material.reduced_formula == "BaHfO3")
                                 .order_by(Material.id.desc())).first()
        set_property(session, bahfo3, "band_gap", 5.5, "dft:qe", unit="eV")
        bahfo3_id = bahfo3.id
    goals = ["band_gap>=3", "eps_electronic>=4"]
    result = invoke("--db", db, "al", "suggest", "--model", models["band_gap"], "--model", models["eps_electronic"],
                    "--goal", goals[0], "--goal", goals[1], "--n", "3", "--queue", "both", "--json",
                    "--out", str(tmp_path / "suggested.csv"))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("["):result.output.rindex("]") + 1])
    saved = list(csv.DictReader((tmp_path / "suggested.csv").open()))  # each goal's fields are columns
    assert [(int(r["rank"]), r["formula"]) for r in saved] == [(i, r["formula"]) for i, r in enumerate(rows, 1)]
    assert [float(r["goals.band_gap>=3.probability"]) for r in saved] == pytest.approx(
        [r["goals"]["band_gap>=3"]["probability"] for r in rows])
    assert len(rows) == 3 and [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for row in rows:
        assert row["score"] == pytest.approx(np.prod([row["goals"][g]["probability"] for g in goals]))
    known = next(r for r in rows if r["material_id"] == bahfo3_id)
    assert known["goals"]["band_gap>=3"] == {"property": "band_gap", "probability": 1.0, "value": 5.5,
                                             "value_low": 5.5, "value_high": 5.5, "measured": True}
    # the ε goal's probability, recomputed from the model alone: learned as log10, so the bound is log10(4)
    eps = Predictor.load(models["eps_electronic"])
    prediction = eps.predict([structures[known["formula"]]])
    expected = 1 - norm.cdf((np.log10(4) - prediction.mean[0]) / max(prediction.std[0], 1e-12))
    assert known["goals"]["eps_electronic>=4"]["probability"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    with oxide_db_copy.session() as session:
        queued = set(session.scalars(select(Subset.material_id).where(Subset.name == "both")))
    assert queued == {r["material_id"] for r in rows}
    for args, message in (
        (["--goal", "m_e<=0.5"], "goal m_e<=0.5: no --model predicts 'm_e'"),
        (["--goal", "band_gap>=3"], "the model\\(s\\) for eps_electronic serve no --goal"),
        (["--goal", "band_gap>=3", "--goal", "eps_electronic>=4", "--range", "1", "2"], "give it without --range"),
        ([], "several models go with --goal"),
    ):
        with pytest.raises(TansakuError, match=message):
            invoke("--db", db, "al", "suggest", "--model", models["band_gap"], "--model", models["eps_electronic"],
                   *args)
