"""Several goals at once: the condition syntax, the joint probability, and a simulation where meeting both goals
is rare and asking for both finds more than asking for one or for nothing."""

from __future__ import annotations

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
                          ("band_gap>=two", "is not a number")):
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
