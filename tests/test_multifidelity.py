"""Two levels of theory: the screening rate, the setup's refusals, and searches on a pool where the cheap level
tells the expensive one and the descriptors tell nothing."""

from __future__ import annotations

import numpy as np
import pytest

from tansaku import TansakuError
from tansaku.active.multifidelity import TwoLevelSetup, cost_to_reach, run_two_level, screening_rate
from tansaku.active.multigoal import Condition


def test_screening_rate_promotes_only_the_outcomes_worth_their_price():
    # half the time the cheap value makes the material a sure hit, half the time a sure miss
    rate = screening_rate(np.array([[1.0, 0.0]]), np.array([0.5, 0.5]), cheap_cost=1.0, expensive_cost=10.0)
    assert rate == pytest.approx([0.5 / (1 + 0.5 * 10)])  # promote the good half only: 1/12 hits per unit
    # an uninformative screen (same P either way) is worth less than promoting without it: 0.3/11 < 0.3/10
    flat = screening_rate(np.array([[0.3, 0.3]]), np.array([0.5, 0.5]), 1.0, 10.0)
    assert flat == pytest.approx([0.3 / 11]) and flat[0] < 0.3 / 10


def informative_cheap_pool(n=300, seed=0):
    rng = np.random.default_rng(seed)
    expensive = rng.uniform(0, 5, n)
    cheap = 0.8 * expensive - 0.5 + rng.normal(0, 0.05, n)  # a shifted, squeezed but faithful cheap level
    return rng.normal(size=(n, 4)), cheap, expensive  # descriptors that say nothing


def test_two_level_search_pays_far_less_than_expensive_only_when_the_cheap_level_is_telling():
    X, cheap, expensive = informative_cheap_pool()
    setup = TwoLevelSetup(X, cheap, expensive, Condition.parse("gap=2.2:2.6"), 1.0, 30.0, init=10, batch=5,
                          budget=1e9, trees=20, diversity=0.0)
    setup.check()
    half = setup.targets().sum() / 2
    costs = {}
    for strategy in ("expensive", "funnel", "two-level"):
        curve = run_two_level(setup, strategy, seed=0)
        assert curve["found"][-1] >= half  # each stops once it has found half
        assert np.all(np.diff(curve["cost"]) > 0) and np.all(np.diff(curve["found"]) >= 0)
        assert curve["cost"] == pytest.approx(np.array(curve["cheap"]) + 30.0 * np.array(curve["expensive"]))
        costs[strategy] = cost_to_reach(curve, half)
    assert costs["two-level"] < 0.5 * costs["expensive"]  # random picking at 30 a piece against cheap screens
    assert costs["funnel"] < costs["expensive"]


@pytest.mark.parametrize("change, message", [
    ({"cheap_cost": 0.0}, "cheap level: its cost must be a positive number"),
    ({"expensive_cost": float("nan")}, "expensive level: its cost must be a positive number"),
    ({"cheap_cost": 5.0, "expensive_cost": 5.0}, "not less than the expensive level's"),
    ({"condition": Condition.parse("gap>=99")}, "no material meets gap>=99"),
])
def test_two_level_setup_refuses_prices_and_goals_that_make_no_search(change, message):
    X, cheap, expensive = informative_cheap_pool(50)
    args = {"X": X, "cheap": cheap, "expensive": expensive, "condition": Condition.parse("gap=2.2:2.6"), **change}
    with pytest.raises(TansakuError, match=message):
        TwoLevelSetup(**args).check()


def test_al_simulate_two_levels_from_two_csvs_joined_by_formula(tmp_path):
    import csv
    import gzip
    import json

    from tests.conftest import SHARED, need_shared
    from tests.test_cli import invoke

    with gzip.open(need_shared(SHARED / "datasets" / "matbench" / "matbench_expt_gap.csv.gz"), "rt") as handle:
        formulas = [row["formula"] for row in csv.DictReader(handle)][:400]
    rng = np.random.default_rng(1)
    expensive = rng.uniform(0, 5, len(formulas))
    expt, pbe = tmp_path / "expt.csv", tmp_path / "pbe.csv"
    expt.write_text("formula,gap\n" + "".join(f"{f},{v}\n" for f, v in zip(formulas, expensive, strict=True)))
    with pbe.open("w") as handle:  # every composition twice (two polymorphs): the join takes their median
        handle.write("formula,gap\n")
        for f, v in zip(formulas, expensive, strict=True):
            handle.write(f"{f},{0.8 * v - 0.6}\n{f},{0.8 * v - 0.4}\n")
        handle.write("Xx2O,1.0\n")  # not a composition: refused, the rest goes on
    out = tmp_path / "curves.json"
    result = invoke("al", "simulate", "--csv", expt, "--cheap-csv", pbe, "--goal", "gap=2.2:2.6",
                    "--expensive-cost", "10", "--init", "10", "--batch", "5", "--seeds", "1",
                    "--trees", "10", "--strategy", "two-level", "--strategy", "expensive", "--json", out,
                    "--plot", tmp_path / "curves.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    data = json.loads(out.read_text())
    assert data["n_pool"] == len(set(formulas))  # formulas are distinct compositions in matbench's table
    assert data["n_targets"] == int(((expensive >= 2.2) & (expensive <= 2.6)).sum())
    assert data["costs"] == {"cheap": 1.0, "expensive": 10.0}
    for runs in data["strategies"].values():
        (run,) = runs
        assert run["cost"][0] == 10 * (1 + 10) and run["cost_to_half"] is not None
    assert data["strategies"]["expensive"][0]["cheap"][-1] == 10  # expensive-only never pays for a cheap value
    assert data["strategies"]["two-level"][0]["cost_to_half"] < data["strategies"]["expensive"][0]["cost_to_half"]
    with pytest.raises(TansakuError, match="--expensive-cost is needed"):
        invoke("al", "simulate", "--csv", expt, "--cheap-csv", pbe, "--goal", "gap=2.2:2.6")
    with pytest.raises(TansakuError, match="exactly one --goal"):
        invoke("al", "simulate", "--csv", expt, "--cheap-csv", pbe, "--goal", "gap>=2", "--goal", "gap<=3",
               "--expensive-cost", "10")
    with pytest.raises(TansakuError, match="needs --csv"):
        invoke("al", "simulate", "--cheap-csv", pbe, "--goal", "gap>=2", "--expensive-cost", "10")
