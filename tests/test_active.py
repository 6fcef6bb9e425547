"""Active learning: acquisition functions by hand, batch selection, the simulation's bookkeeping, the CLI."""

import csv
import gzip
import json
from dataclasses import replace
from math import erf, exp, pi, sqrt

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from sqlalchemy import select
from typer.testing import CliRunner

from tansaku import TansakuError
from tansaku.active.acquisition import (
    Goal,
    expected_improvement,
    in_range_fraction,
    in_range_probability,
    probability_of_improvement,
    score,
    upper_confidence_bound,
)
from tansaku.active.diversity import (
    density_batch,
    duplicate_groups,
    ranking,
    select_batch,
    stratified_batch,
    stratum_errors,
)
from tansaku.active.error_model import predicted_error
from tansaku.active.simulate import Setup, evaluations_to_reach, simulate
from tansaku.active.suggest import suggest
from tansaku.cli.app import app
from tansaku.cli.common import State
from tansaku.features import ions
from tansaku.models.learners import make_model
from tansaku.store.tables import Material, Subset
from tests.cells import face_centred
from tests.conftest import E_FORM_CSV, need_shared

runner = CliRunner()


def invoke(*args):
    State.db = None
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def Phi(z):  # noqa: N802 - the usual symbol
    return 0.5 * (1 + erf(z / sqrt(2)))


def phi(z):
    return exp(-z * z / 2) / sqrt(2 * pi)


def test_acquisition_functions_match_hand_computed_values():
    mean, std = np.array([1.0, 0.0, 2.0]), np.array([1.0, 2.0, 0.5])
    ei = expected_improvement(mean, std, best=0.0)
    assert ei[0] == pytest.approx(1 * Phi(1) + phi(1))
    assert ei[1] == pytest.approx(2 * phi(0))  # at the best value EI is σ φ(0)
    assert ei[2] == pytest.approx(2 * Phi(4) + 0.5 * phi(4))
    pi_ = probability_of_improvement(mean, std, best=0.5)
    assert pi_ == pytest.approx([Phi(0.5), Phi(-0.25), Phi(3.0)])
    assert upper_confidence_bound(mean, std, kappa=2) == pytest.approx([3.0, 4.0, 3.0])
    inside = in_range_probability(mean, std, lo=0.0, hi=1.5)
    assert inside == pytest.approx([Phi(0.5) - Phi(-1), Phi(0.75) - 0.5, Phi(-1) - Phi(-4)])
    samples = np.array([[0.2, 5.0], [1.0, 1.4], [2.0, 1.5], [1.2, -1.0]])
    assert in_range_fraction(samples, 0.0, 1.5) == pytest.approx([0.75, 0.5])
    # zero spread: EI is the plain improvement, PI a step
    assert expected_improvement([1.0, -1.0], [0.0, 0.0], best=0.0) == pytest.approx([1.0, 0.0])


def test_goals_and_desirability():
    window = Goal("range", 2.0, 3.0)
    assert window.desirability(np.array([2.5, 1.0, 4.0, 2.0])) == pytest.approx([0.0, -1.5, -1.5, -0.5])
    assert Goal("maximize").desirability(np.array([1.0, 3.0])) == pytest.approx([1.0, 3.0])
    assert Goal("minimize").desirability(np.array([1.0, 3.0])) == pytest.approx([-1.0, -3.0])
    with pytest.raises(TansakuError, match="lo .* must be smaller than hi"):
        Goal("range", 3.0, 2.0)
    with pytest.raises(TansakuError, match="both ends"):
        Goal("range", 1.0)
    for lo, hi in ((2.0, float("inf")), (float("nan"), 3.0)):  # an open window has no centre to score against
        with pytest.raises(TansakuError, match="both ends must be finite numbers"):
            Goal("range", lo, hi)
    with pytest.raises(TansakuError, match="needs a goal"):
        score("ei", Goal("error"), np.zeros(3), np.ones(3), best=0.0)
    with pytest.raises(TansakuError, match="needs a window"):
        score("range", Goal("maximize"), np.zeros(3), np.ones(3))


def test_window_scores_rank_the_obvious_candidate_first():
    goal = Goal("range", 2.0, 3.0)
    mean, std = np.array([2.5, 0.5, 5.0, 2.9]), np.array([0.2, 0.2, 0.2, 1.5])
    assert np.argmax(score("range", goal, mean, std)) == 0
    samples = mean + std * np.array([[-1.0], [0.0], [1.0]])  # three 'members': mean ± std
    d = goal.desirability(samples)
    ei = score("ei", goal, mean, std, best=-0.4, samples=samples)
    assert ei == pytest.approx(expected_improvement(d.mean(0), d.std(0), -0.4))
    assert np.argmax(score("range-ensemble", goal, mean, std, samples=samples)) == 0
    ucb = score("ucb", goal, mean, std, samples=samples)
    assert ucb == pytest.approx(d.mean(0) + 2 * d.std(0))
    # the textbook variant: mean and std already describe the desirability (a model fitted to it)
    d_mean, d_std = np.array([-0.1, -1.0]), np.array([0.2, 1.0])
    assert score("ei-direct", goal, d_mean, d_std, best=-0.3) == pytest.approx(
        [0.2 * Phi(1) + 0.2 * phi(1), -0.7 * Phi(-0.7) + phi(-0.7)])
    assert score("pi-direct", goal, d_mean, d_std, best=-0.3) == pytest.approx([Phi(1), Phi(-0.7)])


def test_direct_desirability_baseline_trains_its_own_model():
    """ei-direct fits a second forest to -|y - centre|: it must still find window materials, and only there."""
    X, y = _synthetic(600, seed=1)
    setup = Setup(X, y, Goal("range", 2.0, 2.4), init=10, batch=5, budget=80, seeds=2, test_fraction=0.0,
                  trees=30)
    result = simulate(setup, ["random", "ei-direct", "pi-direct"])
    found = {name: np.median([r["found"][-1] for r in runs]) for name, runs in result["strategies"].items()}
    assert found["ei-direct"] > found["random"] and found["pi-direct"] > found["random"], found
    for runs in result["strategies"].values():
        assert all(len(set(r["labelled"])) == 80 for r in runs)


def test_batch_of_one_is_the_ranking_and_batches_avoid_near_copies():
    rng = np.random.default_rng(0)
    scores = np.array([10.0, 9.9, 5.0, 1.0])
    coords = np.array([[0.0, 0.0], [0.001, 0.0], [8.0, 0.0], [0.0, 9.0]])
    assert list(select_batch(scores, 1, rng, coords, 1.0)) == [0]
    assert list(select_batch(scores, 2, rng)) == [0, 1]  # no coordinates: plain top-k
    assert list(select_batch(scores, 2, rng, coords, 1.0)) == [0, 2]  # the near-copy of 0 is pushed down
    many = rng.normal(size=200)
    assert list(select_batch(many, 1, rng, rng.normal(size=(200, 3)), 1.0)) == [int(np.argmax(many))]
    ties = ranking(np.zeros(50), np.random.default_rng(1))
    assert sorted(ties) == list(range(50)) and list(ties) != list(range(50))  # ties broken at random
    with pytest.raises(TansakuError, match="NaN"):
        ranking(np.array([1.0, np.nan]), rng)


def test_stratified_batch_follows_neyman_allocation():
    rng = np.random.default_rng(0)
    strata = np.repeat([0, 1], 50)
    std = np.where(strata == 0, 1.0, 3.0)
    chosen = stratified_batch(std, strata, np.zeros(2, dtype=int), 8, rng)
    assert len(set(chosen)) == 8
    assert np.bincount(strata[chosen], minlength=2).tolist() == [2, 6]  # n_h ∝ N_h σ_h = 50:150
    # a region already sampled beyond its share gets nothing more
    chosen = stratified_batch(std, strata, np.array([10, 0]), 4, rng)
    assert set(strata[chosen]) == {1}


def test_stratum_errors_trust_residuals_where_there_are_labels():
    # region 0: trees agree (spread 0.1) but 7 labelled residuals of 1.0; region 1: spread 0.5, no labels
    strata = np.repeat([0, 1], 10)
    std = np.where(strata == 0, 0.1, 0.5)
    residuals = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0])
    sigma = stratum_errors(std, strata, residuals, np.zeros(7, dtype=int), 2, prior=3.0)
    assert sigma[0] == pytest.approx(np.sqrt((7 * 1.0 + 3 * 0.01) / 10))  # hand-computed
    assert sigma[1] == pytest.approx(0.5)  # no residuals: the tree spread
    # so the allocation now favours region 0, which tree spread alone would have starved
    chosen = stratified_batch(std, strata, np.array([7, 0]), 6, np.random.default_rng(0), sigma)
    assert np.bincount(strata[chosen], minlength=2)[0] > np.bincount(
        strata[stratified_batch(std, strata, np.array([7, 0]), 6, np.random.default_rng(0))], minlength=2)[0]


def test_out_of_bag_predictions_are_honest():
    X, y = _synthetic(300, seed=4)
    model = make_model("rf", 0, trees=60, oob=True).fit(X, y)
    in_bag = np.abs(model.predict(X) - y).mean()
    out_of_bag = np.abs(model.oob_prediction() - y).mean()
    assert out_of_bag > 1.5 * in_bag  # a forest nearly memorizes its training rows; OOB does not
    model.learner.set_params(n_estimators=1)
    single = model.fit(X, y).oob_prediction()  # one tree: the rows it drew have no out-of-bag vote
    assert 0.2 < np.isnan(single).mean() < 0.8 and np.isfinite(single).sum() > 50
    with pytest.raises(TansakuError, match="out-of-bag"):
        make_model("rf", 0, trees=5).fit(X, y).oob_prediction()
    with pytest.raises(TansakuError, match="bootstrap random forest"):
        make_model("et", 0, oob=True)


def test_error_model_points_at_the_region_where_the_forest_is_wrong():
    # y is smooth for x0 < 0.5 and rough (high frequency) above: the forest's out-of-bag errors are large there
    rng = np.random.default_rng(5)
    X = rng.uniform(0, 1, size=(400, 2))
    rough = X[:, 0] > 0.5
    y = np.where(rough, np.sin(40 * X[:, 1]), 0.1 * X[:, 1])
    model = make_model("rf", 0, trees=40, oob=True).fit(X[:200], y[:200])
    residuals = y[:200] - model.oob_prediction()
    residuals[:3] = np.nan  # rows every tree saw: left out, not fatal
    error = predicted_error(X[:200], residuals, X[200:], seed=0)
    assert error.min() > 0
    assert error[rough[200:]].mean() > 2 * error[~rough[200:]].mean()
    draws = select_batch(score("error-model", Goal("error"), error, error, rng=rng), 50, rng)
    assert len(set(draws.tolist())) == 50 and rough[200:][draws].mean() > 0.6  # random draws: 0.5
    with pytest.raises(TansakuError, match="only 4 out-of-sample residuals"):
        predicted_error(X[:4], residuals[3:7], X[200:])


def test_density_batch_takes_one_per_group_and_favours_large_groups():
    X = np.array([[1.0, np.nan], [1.0, np.nan], [1.0, 2.0], [3.0, 4.0], [1.0, np.nan], [3.0, 4.0]])
    groups = duplicate_groups(X)
    assert groups[0] == groups[1] == groups[4] and groups[3] == groups[5]
    assert len(set(groups.tolist())) == 3
    rng = np.random.default_rng(0)
    groups = np.array([0] * 100 + list(range(1, 101)))  # one composition 100 times, 100 singletons
    size = np.bincount(groups)
    std = np.ones(200)
    picks = [density_batch(std, groups, size, 1, rng)[0] for _ in range(200)]
    assert np.mean(np.array(picks) < 100) > 0.4  # 100 x the weight of each singleton: ~50 % of draws
    batch = density_batch(std, groups, size, 20, rng)
    assert len(set(groups[batch].tolist())) == 20  # never two copies of one composition in a batch


def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, 3))
    y = 4 * X[:, 0] + np.sin(6 * X[:, 1]) + 0.05 * rng.normal(size=n)
    return X, y


def test_simulation_bookkeeping_same_start_no_relabelling_no_test_leak():
    X, y = _synthetic()
    setup = Setup(X, y, Goal("range", 1.0, 1.5), init=10, batch=7, budget=45, seeds=2, test_fraction=0.25,
                  trees=20)
    result = simulate(setup, ["random", "uncertainty", "ei", "range", "stratified"])
    assert result["n_pool"] == 300 and result["n_test"] == 100
    for seed in range(2):
        runs = {name: runs[seed] for name, runs in result["strategies"].items()}
        starts = {tuple(r["labelled"][:10]) for r in runs.values()}
        assert len(starts) == 1  # every strategy starts from the same materials
        for name, run in runs.items():
            labelled = run["labelled"]
            assert len(labelled) == len(set(labelled)) == 45, name
            assert run["evaluated"] == [10, 17, 24, 31, 38, 45]  # the last batch is cut to the budget
            assert np.all(np.diff(run["found"]) >= 0)
            hits = [(1.0 <= y[i] <= 1.5) for i in labelled]
            assert run["found"][-1] == sum(hits)
    # the test set is what no strategy ever labelled, and it is the same for all
    labelled_any = {i for runs in result["strategies"].values() for r in runs if r["seed"] == 0
                    for i in r["labelled"]}
    assert len(labelled_any) <= 300
    assert result["n_targets"] == int(sum(1 for i in range(len(y)) if 1.0 <= y[i] <= 1.5 and i not in
                                          _test_indices(setup)))


def _test_indices(setup):
    from tansaku.active.simulate import split

    _, test, _ = split(setup, 0)
    return set(test.tolist())


def test_a_run_split_by_seed_equals_the_whole_run():
    X, y = _synthetic(200, seed=2)
    setup = Setup(X, y, Goal("range", 1.0, 2.0), init=10, batch=5, budget=30, seeds=2, test_fraction=0.2, trees=10)
    whole = simulate(setup, ["range"])["strategies"]["range"]
    second = simulate(replace(setup, seeds=1, first_seed=1), ["range"])["strategies"]["range"]
    assert [r["seed"] for r in whole] == [0, 1] and second[0]["seed"] == 1
    assert second[0]["labelled"] == whole[1]["labelled"] and second[0]["mae"] == whole[1]["mae"]


def test_no_strategy_ever_trains_on_the_test_set():
    X, y = _synthetic(300, seed=3)
    setup = Setup(X, y, Goal("error"), init=20, batch=20, budget=200, seeds=1, test_fraction=0.3, trees=10)
    result = simulate(setup, ["uncertainty", "weighted", "stratified", "density", "random"])
    result["strategies"].update(simulate(replace(setup, model="rf"), ["stratified-error", "error-model"])["strategies"])
    test = _test_indices(setup)
    for name, runs in result["strategies"].items():
        assert not test.intersection(runs[0]["labelled"]), name
        assert runs[0]["found"] is None and len(runs[0]["mae"]) == 10
    assert len(test) == 90


def test_target_range_finds_window_materials_faster_than_random():
    X, y = _synthetic(600, seed=1)
    setup = Setup(X, y, Goal("range", 2.0, 2.4), init=10, batch=5, budget=80, seeds=3, test_fraction=0.0,
                  trees=30)
    result = simulate(setup, ["random", "range"])
    found = {name: np.median([r["found"][-1] for r in runs]) for name, runs in result["strategies"].items()}
    assert found["range"] > 2 * found["random"], found


def test_simulation_rejects_bad_setups():
    X, y = _synthetic(50)
    with pytest.raises(TansakuError, match="budget .* larger than the initial set"):
        simulate(Setup(X, y, Goal("error"), init=20, batch=5, budget=20), ["random"])
    with pytest.raises(TansakuError, match="pool is empty"):
        simulate(Setup(X[:0], y[:0], Goal("error"), init=2, batch=1, budget=5), ["random"])
    bad = X.copy()
    bad[7] = np.nan
    with pytest.raises(TansakuError, match="1 materials have no usable descriptor .* m7"):
        simulate(Setup(bad, y, Goal("error"), init=5, batch=1, budget=10, names=[f"m{i}" for i in range(50)]),
                 ["random"])
    with pytest.raises(TansakuError, match="exceeds the pool"):
        simulate(Setup(X, y, Goal("error"), init=5, batch=5, budget=45, test_fraction=0.2), ["random"])
    with pytest.raises(TansakuError, match="unknown strategy 'magic'"):
        simulate(Setup(X, y, Goal("error"), init=5, batch=5, budget=20), ["random", "magic"])
    with pytest.raises(TansakuError, match="needs a goal"):
        simulate(Setup(X, y, Goal("error"), init=5, batch=5, budget=20), ["ei"])
    with pytest.raises(TansakuError, match="'error-model' measures errors out of bag: it needs --model rf"):
        simulate(Setup(X, y, Goal("error"), init=5, batch=5, budget=20, model="et"), ["error-model"])
    with pytest.raises(TansakuError, match="lgbm-lin also reads the ions descriptor block"):
        simulate(Setup(X, y, Goal("error"), init=5, batch=5, budget=20, model="lgbm-lin"), ["random"])


def test_evaluations_to_reach_interpolates():
    assert evaluations_to_reach([10, 20, 30], [0, 4, 8], 6, True) == pytest.approx(25)
    assert evaluations_to_reach([10, 20, 30], [0.5, 0.4, 0.3], 0.35, False) == pytest.approx(25)
    assert evaluations_to_reach([10, 20], [0, 1], 5, True) is None


def test_al_simulate_cli_on_the_oxide_database(oxide_db, tmp_path):
    out, plot = tmp_path / "bg.json", tmp_path / "bg.png"
    result = invoke("--db", oxide_db.url, "al", "simulate", "--property", "band_gap", "--db", "--subset", "paper",
                    "--range", 2, 3, "--strategy", "random", "--strategy", "range", "--init", 20, "--batch", 10,
                    "--budget", 50, "--seeds", 2, "--trees", 20, "--test-fraction", 0.2, "--json", out,
                    "--plot", plot)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["n_pool"] == 1013 and data["n_test"] == 253 and 200 < data["n_targets"] < 300
    assert set(data["strategies"]) == {"random", "range"}
    for runs in data["strategies"].values():
        assert len(runs) == 2
        for run in runs:
            assert run["evaluated"] == [20, 30, 40, 50]
            assert len(run["found"]) == len(run["mae"]) == len(run["r2"]) == 4
    assert plot.stat().st_size > 5000
    assert "evals for half" in result.output
    with pytest.raises(TansakuError, match="no material has 'nonexistent'|nonexistent"):
        invoke("--db", oxide_db.url, "al", "simulate", "--property", "nonexistent", "--db", "--budget", 60)


def test_al_simulate_cli_on_a_csv_with_a_biased_start(tmp_path):
    source = need_shared(E_FORM_CSV)
    table = tmp_path / "e_form.csv"
    with gzip.open(source, "rt") as f, table.open("w", newline="") as out:
        rows = csv.reader(f)
        writer = csv.writer(out)
        writer.writerow(next(rows))
        writer.writerows(row for i, row in enumerate(rows) if i % 265 == 0)  # 501 rows across the file
    out = tmp_path / "ef.json"
    result = invoke("al", "simulate", "--property", "e_form", "--csv", table, "--strategy", "random",
                    "--strategy", "stratified", "--strata", 20, "--init", 30, "--batch", 20, "--budget", 90,
                    "--seeds", 1, "--trees", 20, "--test-fraction", 0.1, "--init-containing", "O",
                    "--test-without", "O", "--model", "rf", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["n_test"] == 50 and data["n_pool"] == 451
    from pymatgen.core import Composition

    with table.open() as f:
        formulas = [r[0] for r in list(csv.reader(f))[1:]]
    for run in (runs[0] for runs in data["strategies"].values()):
        assert all("O" in Composition(formulas[i]).get_el_amt_dict() for i in run["labelled"][:30])
        # non-oxides added to an oxide start teach the model about the non-oxide test set: the error falls
        assert run["found"] is None and run["mae"][-1] < 0.5 * run["mae"][0], run["mae"]


def test_al_suggest_ranks_and_queues_candidates(oxide_db_copy, tmp_path):
    db = oxide_db_copy.url
    model = tmp_path / "eps.pkl"
    assert invoke("--db", db, "train", "--property", "eps_electronic", "--model", "et", "--cv", "0",
                  "--out", model).exit_code == 0
    for name, (a, b) in {"BaHfO3": ("Ba", "Hf"), "SrZrO3": ("Sr", "Zr"), "CaSnO3": ("Ca", "Sn")}.items():
        s = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.1), [a, b, "O"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
        s.to(filename=str(tmp_path / f"{name}.cif"))
        assert invoke("--db", db, "import", "structures", tmp_path / f"{name}.cif").exit_code == 0
    result = invoke("--db", db, "al", "suggest", "--model", model, "--range", 3, 6, "--n", 2, "--queue", "next",
                    "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("["):])
    assert len(rows) == 2 and {r["formula"] for r in rows} <= {"BaHfO3", "SrZrO3", "CaSnO3"}
    # std may be 0: extra trees (no bootstrap) agree exactly on a composition they were trained on (SrZrO3)
    assert rows[0]["score"] >= rows[1]["score"] and all(r["std"] >= 0 and r["value"] > 1 for r in rows)
    # the interval is in the property's units like the value (not ± a log10 spread), and flagged by domain
    assert all(r["value_low"] <= r["value"] <= r["value_high"] and r["transform"] == "log10" for r in rows)
    assert all(r["value_high"] == pytest.approx(10 ** (r["mean"] + r["std"])) for r in rows)
    assert all(isinstance(r["in_domain"], bool) for r in rows)
    with oxide_db_copy.session() as session:
        queued = set(session.scalars(select(Subset.material_id).where(Subset.name == "next")))
    assert queued == {r["material_id"] for r in rows}
    # a weighted draw is a draw: the batch's distance penalty (which reorders ranked strategies) leaves it alone
    for name, (a, b) in {"MgGeO3": ("Mg", "Ge"), "CdHfO3": ("Cd", "Hf"), "ZnSnO3": ("Zn", "Sn")}.items():
        s = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.0), [a, b, "O"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
        s.to(filename=str(tmp_path / f"{name}.cif"))
        assert invoke("--db", db, "import", "structures", tmp_path / f"{name}.cif").exit_code == 0
    draws = [[r["formula"] for r in suggest(oxide_db_copy, model, Goal("error"), ["db-missing"], 3,
                                            strategy="weighted", diversity=d, seed=seed)]
             for seed in range(4) for d in (0.0, 20.0)]
    assert draws[0::2] == draws[1::2], draws
    # structure files as candidates: only the chosen one is stored (and queued); a file the descriptors refuse
    # (a noble-gas crystal) and the ones not chosen leave nothing in the database
    files = []
    for name, (a, b) in {"BaTaO3": ("Ba", "Ta"), "SrGeO3": ("Sr", "Ge")}.items():
        s = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.0), [a, b, "O"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
        files.append(tmp_path / f"file-{name}.cif")
        s.to(filename=str(files[-1]))
    files.append(tmp_path / "argon.cif")
    face_centred(5.3, [("Ar", (0.0, 0.0, 0.0))]).to(filename=str(files[-1]))
    with oxide_db_copy.session() as session:
        before = session.query(Material).count()
    rows = suggest(oxide_db_copy, model, Goal("range", 3, 6), [str(f) for f in files], 1, queue="from-files")
    with oxide_db_copy.session() as session:
        assert session.query(Material).count() == before + 1
        queued = list(session.scalars(select(Subset.material_id).where(Subset.name == "from-files")))
    assert queued == [rows[0]["material_id"]] and rows[0]["candidate"] in map(str, files[:2])
    assert "to_store" not in rows[0]
    with pytest.raises(TansakuError, match="exactly one goal"):
        invoke("--db", db, "al", "suggest", "--model", model, "--range", 3, 6, "--maximize")
    with pytest.raises(TansakuError, match="lo must be > 0"):
        invoke("--db", db, "al", "suggest", "--model", model, "--range", -1, 6)
    with pytest.raises(TansakuError, match="'ei-direct' cannot rank with a saved model: it fits a second model"):
        invoke("--db", db, "al", "suggest", "--model", model, "--range", 3, 6, "--strategy", "ei-direct")
    with pytest.raises(TansakuError, match="'error-model' cannot rank .* a campaign with \\[goal\\] kind = 'error'"):
        invoke("--db", db, "al", "suggest", "--model", model, "--uncertainty", "--strategy", "error-model")


def test_calibration_brings_held_out_coverage_to_68_percent():
    from tansaku.models.calibration import Calibrated

    rng = np.random.default_rng(5)
    X = rng.uniform(0, 1, size=(900, 4))
    y = 3 * X[:, 0] + np.sin(5 * X[:, 1]) + 0.3 * rng.normal(size=900)  # noise the tree spread underestimates
    train, test = slice(0, 600), slice(600, None)

    def coverage(model):
        mean, std = model.fit(X[train], y[train]).predict_dist(X[test])
        return np.mean(np.abs(y[test] - mean) <= std)

    raw = coverage(make_model("et", 0, trees=50))
    calibrated = coverage(Calibrated(make_model("et", 0, trees=50), folds=3))
    assert abs(calibrated - 0.68) < 0.07, calibrated
    assert abs(calibrated - 0.68) < abs(raw - 0.68), (raw, calibrated)


def test_calibrated_lightgbm_has_usable_intervals_where_the_raw_bag_has_not():

    rng = np.random.default_rng(7)
    X = rng.uniform(0, 1, size=(900, 4))
    y = 3 * X[:, 0] + np.sin(5 * X[:, 1]) + 0.3 * rng.normal(size=900)
    train, test = slice(0, 600), slice(600, None)

    def coverage(name):
        mean, std = make_model(name).fit(X[train], y[train]).predict_dist(X[test])
        return np.mean(np.abs(y[test] - mean) <= std)

    raw, calibrated = coverage("lgbm"), coverage("lgbm-cal")
    assert raw < 0.4, raw  # boosted models agree with each other far more than with the data
    assert abs(calibrated - 0.68) < 0.08, calibrated


@pytest.mark.parametrize("name", ["lgbm-cal", "lgbm-lin"])
def test_calibration_on_ten_samples_gives_an_interval_the_size_of_the_residuals(name):
    # ten samples: the boosted bag makes no splits, its members agree exactly, and dividing residuals by that
    # zero spread once made the scale 10¹¹ and the ± overflow; the floor turns it into a constant interval
    rng = np.random.default_rng(3)

    def descriptors(n):
        X = rng.normal(size=(n, 8))
        if name == "lgbm-lin":  # its ridge reads ion fractions from the last columns
            fractions = np.zeros((n, len(ions.names())))
            fractions[np.arange(n), rng.integers(0, 20, n)] = 1
            X = np.hstack([X, fractions])
        return X

    X = descriptors(10)
    y = 0.3 * X[:, 0] + 0.1 * rng.normal(size=10)
    model = make_model(name).fit(X, y)
    mean, std = model.predict_dist(descriptors(5))
    assert np.all(np.isfinite(std)) and np.all(std > 0.02 * y.std()), std
    assert np.all(std < 5 * y.std()), (std, y.std())
    # boosted bags keep no members to draw from: range-ensemble gets a clear refusal, not an AttributeError
    with pytest.raises(TansakuError, match="LGBMBag has no ensemble members to sample"):
        model.predict_samples(descriptors(5))
