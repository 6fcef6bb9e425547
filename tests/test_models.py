"""Training, evaluation, persistence and prediction on the real oxide database."""

import csv
import json
import pickle
import zlib

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from sklearn.model_selection import KFold
from sqlalchemy import select
from typer.testing import CliRunner

from tansaku import TansakuError
from tansaku.cli.app import app
from tansaku.cli.common import State
from tansaku.models.dataset import load_dataset
from tansaku.models.evaluation import evaluate, metrics
from tansaku.models.learners import ForestWithSpread, make_model
from tansaku.models.persistence import load_model, save_model
from tansaku.models.predictor import Predictor
from tansaku.models.stacking import LinearStacked
from tansaku.store.tables import Material, Property
from tests.cells import fluorite, rocksalt

runner = CliRunner()


def invoke(db, *args):
    State.db = None
    return runner.invoke(app, ["--db", db, *args], catch_exceptions=False)


def test_metrics_and_coverage_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    m = metrics(y, y + np.array([0.5, -0.5, 1.5, 0.0]), np.ones(4))
    assert m["mae"] == pytest.approx(0.625) and m["coverage_68"] == 0.75 and m["coverage_95"] == 1.0


def test_forest_saved_before_the_oob_option_still_loads():
    X, y = np.random.default_rng(0).random((30, 4)), np.arange(30.0)
    model = make_model("rf", trees=10).fit(X, y)
    del model.learner_.__dict__["oob"]  # as pickled by a version without out-of-bag predictions
    old = pickle.loads(pickle.dumps(model))
    assert old.learner_.get_params()["oob"] is False
    assert np.allclose(old.predict_dist(X)[0], model.predict_dist(X)[0])
    with pytest.raises(TansakuError, match="out-of-bag"):
        old.oob_prediction()


def test_linear_stacking_helps_trees_on_a_smooth_trend_and_keeps_its_training_column_out_of_fold():
    rng = np.random.default_rng(0)
    X = rng.random((400, 6))
    y = 3 * X[:, 0] + 2 * X[:, 1] - X[:, 2] + 0.5 * (X[:, 3] > 0.5) + 0.05 * rng.normal(size=400)
    train, test = np.arange(300), np.arange(300, 400)
    forest = ForestWithSpread("et", 100, 0.5)
    plain = forest.fit(X[train], y[train]).predict(X[test])
    stacked_model = LinearStacked(forest).fit(X[train], y[train])
    stacked = stacked_model.predict(X[test])
    assert np.abs(stacked - y[test]).mean() < 0.7 * np.abs(plain - y[test]).mean()  # measured: 0.60
    assert stacked_model.feature_importances_.shape == (6,) and 0 < stacked_model.linear_importance_ < 1
    # The trees saw, for each training row, the prediction of a ridge fitted without that row.
    seen = stacked_model.training_linear_
    for fit_rows, held in KFold(5, shuffle=True, random_state=0).split(X[train]):
        without = LinearStacked(ForestWithSpread("et", 5)).fit(X[train][fit_rows], y[train][fit_rows]).ridge_
        assert seen[held] == pytest.approx(without.predict(X[train][held]))
    assert not np.allclose(seen, stacked_model.ridge_.predict(X[train]))
    assert stacked_model.predict_dist(X[test])[1].shape == (100,)
    # trailing columns for the ridge alone (ion fractions): the trees never see them, the ridge uses them
    fractions = rng.dirichlet(np.ones(3), size=400)
    y2 = y + 2 * fractions[:, 0]
    with_fractions = np.column_stack([X, fractions])
    only = LinearStacked(forest, linear_only=3).fit(with_fractions[train], y2[train])
    assert only.learner_.forest_.n_features_in_ == 7  # six descriptors and the ridge column
    assert only.feature_importances_.shape == (9,) and not only.feature_importances_[6:].any()
    blind = LinearStacked(forest).fit(X[train], y2[train]).predict(X[test])
    assert np.abs(only.predict(with_fractions[test]) - y2[test]).mean() < 0.8 * np.abs(blind - y2[test]).mean()
    with pytest.raises(TansakuError, match="last 3 columns, and these are not fractions"):
        LinearStacked(forest, linear_only=3).fit(X[train], y[train])


def test_lgbm_lin_reads_ion_fractions_through_training_saving_and_prediction(oxide_db_copy, tmp_path):
    from tansaku.store.tables import Subset

    oxide_db = oxide_db_copy
    with oxide_db.session() as session:  # the two compounds it predicts are left out of training
        paper = select(Subset.material_id).where(Subset.name == "paper")
        ids = session.scalars(select(Material.id).where(Material.id.in_(paper),
                                                        Material.reduced_formula.not_in(["SrTiO3", "MgO"]))).all()
        assert len(ids) == 1266 - 2
        session.add_all(Subset(name="paper-but-two", material_id=i) for i in ids)
    model = tmp_path / "lin.pkl"
    result = invoke(oxide_db.url, "train", "--property", "eps_electronic", "--features", "composition", "--model",
                    "lgbm-lin", "--subset", "paper-but-two", "--cv", "0", "--out", str(model))
    assert result.exit_code == 0, result.output
    fitted, meta = load_model(model)
    assert meta["feature_set"] == "composition" and meta["descriptors"] == "composition+ions"
    assert meta["descriptor_version"].endswith("+ions-1") and meta["feature_names"][-1].startswith("ion_fraction:")
    out = invoke(oxide_db.url, "predict", "--model", str(model), "--formula", "SrTiO3", "--formula", "MgO", "--json")
    rows = json.loads(out.output)
    assert 4 < rows[0]["value"] < 8 and 2.5 < rows[1]["value"] < 4  # PBEsol: SrTiO3 ≈ 6, MgO ≈ 3.2
    data = load_dataset(oxide_db, "eps_electronic", "composition", subset="paper")
    with pytest.raises(ValueError, match="features"):  # the plain set lacks the block it reads
        fitted.predict(data.X[:3])


def test_lgbm_chgnet_trains_on_structures_and_predicts_a_new_one(oxide_db_copy, tmp_path):
    from tansaku.features import mlip
    from tansaku.store.tables import Subset

    db = oxide_db_copy
    with db.session() as session:
        ids = session.scalars(select(Property.material_id).join(Material, Material.id == Property.material_id)
                              .where(Property.name == "eps_ionic", Material.nsites <= 5)
                              .order_by(Property.material_id).limit(10)).all()  # small cells: CHGNet is quick
        session.add_all(Subset(name="few", material_id=i) for i in ids)
    model = tmp_path / "chgnet.pkl"
    result = invoke(db.url, "train", "--property", "eps_ionic", "--features", "structure", "--model", "lgbm-chgnet",
                    "--subset", "few", "--cv", "0", "--out", str(model))
    assert result.exit_code == 0, result.output
    _, meta = load_model(model)
    assert meta["descriptors"] == "structure+chgnet+ions" and mlip.VERSION in meta["descriptor_version"]
    assert "polar_softness_max_log10" in meta["feature_names"]
    mgo = rocksalt(4.21, "Mg", "O")
    mgo.to(filename=str(tmp_path / "MgO.cif"))
    rows = json.loads(invoke(db.url, "predict", "--model", str(model), "--structure", str(tmp_path / "MgO.cif"),
                             "--json").output)
    # ten training cells say little: the prediction must exist and be a dielectric constant, its interval wide
    # but finite (the spread floor in `Calibrated`)
    assert len(rows) == 1 and 1 < rows[0]["value"] < 1e3
    assert 0 < rows[0]["value_low"] < rows[0]["value"] < rows[0]["value_high"] < 1e4, rows
    # a structure CHGNet cannot read drops out alone: the batch is described again one structure at a time
    fluorite(5.38, "Am", "O").to(
        filename=str(tmp_path / "AmO2.cif"))
    out = invoke(db.url, "predict", "--model", str(model), "--structure", str(tmp_path / "AmO2.cif"),
                 "--structure", str(tmp_path / "MgO.cif"), "--json")
    assert out.exit_code == 1 and [r["input"] for r in json.loads(out.stdout)] == [str(tmp_path / "MgO.cif")]
    assert json.loads(out.stdout)[0]["value"] == pytest.approx(rows[0]["value"])
    assert "AmO2.cif: AmO2: CHGNet was trained on elements up to Pu (Z = 94) and cannot read Am" in out.stderr
    # hypothetical candidates as structure files go through the same descriptors for active learning
    for name, a in {"CaO": 4.81, "SrO": 5.16}.items():
        rocksalt(a, name[:-1], "O").to(filename=str(tmp_path / f"{name}.cif"))
    result = invoke(db.url, "al", "suggest", "--model", str(model), "--range", 10, 30, "--n", 2, "--json",
                    "--candidates", str(tmp_path / "MgO.cif"), "--candidates", str(tmp_path / "CaO.cif"),
                    "--candidates", str(tmp_path / "AmO2.cif"), "--candidates", str(tmp_path / "SrO.cif"))
    assert "skipped " + str(tmp_path / "AmO2.cif") + ": AmO2: CHGNet was trained" in result.stderr
    ranked = json.loads(result.stdout[result.stdout.index("["):])
    assert len(ranked) == 2 and {r["formula"] for r in ranked} <= {"MgO", "CaO", "SrO"}, ranked
    assert ranked[0]["score"] >= ranked[1]["score"] and all(np.isfinite(r["std"]) for r in ranked)
    with pytest.raises(TansakuError, match="chgnet descriptors read crystal structures: use --features structure"):
        invoke(db.url, "train", "--property", "eps_ionic", "--features", "composition", "--model", "lgbm-chgnet",
               "--subset", "few", "--cv", "0", "--out", str(tmp_path / "no.pkl"))


def test_feature_cache_serves_the_second_run_and_stores_ion_fractions_compressed(oxide_db_copy):
    from tansaku.features import ions
    from tansaku.features.sets import cached_features, feature_names, featurizer_key
    from tansaku.store.tables import FeatureCache, Material

    db = oxide_db_copy
    with db.session() as session:
        ids = list(session.scalars(select(Material.id).order_by(Material.id).limit(4)))
    first = cached_features(db, ids, "composition+ions")
    width = len(feature_names("composition"))
    with db.session() as session:
        stored = {(key, mid): blob for key, mid, blob in session.execute(select(
            FeatureCache.featurizer, FeatureCache.material_id, FeatureCache.values).where(
            FeatureCache.material_id.in_(ids)))}
        key = featurizer_key("composition")
        assert all(len(stored[(key, mid)]) == 8 * width for mid in ids)
        assert all(len(stored[(ions.VERSION, mid)]) < 200 for mid in ids)  # 655 mostly-zero columns, compressed
        # a changed cached value shows up: the second run reads the cache instead of featurizing again
        row = np.frombuffer(stored[(key, ids[0])], dtype="<f8").copy()
        row[0] = 1234.5
        session.query(FeatureCache).filter(FeatureCache.featurizer == key,
                                           FeatureCache.material_id == ids[0]).update({"values": row.tobytes()})
        # a damaged ion row (decompresses to 3 bytes) is recomputed, not a crash
        session.query(FeatureCache).filter(FeatureCache.featurizer == ions.VERSION,
                                           FeatureCache.material_id == ids[1]).update({"values": zlib.compress(b"abc")})
    second = cached_features(db, ids, "composition+ions")
    assert second[0, 0] == 1234.5
    assert np.array_equal(second[:, 1:], first[:, 1:], equal_nan=True)


def test_dataset_uses_log10_and_the_paper_subset(oxide_db):
    data = load_dataset(oxide_db, "eps_ionic", "composition", subset="paper")
    assert len(data.y) == 1266 and data.log_target
    assert data.X.shape == (1266, len(data.feature_names))
    assert data.y.min() > -2 and data.y.max() < 4  # log10 of ε_ion


def test_forest_learns_electronic_dielectric_constant(oxide_db):
    data = load_dataset(oxide_db, "eps_electronic", "composition", subset="paper")
    result = evaluate(make_model("et", trees=150), data.X, data.y, data.groupings(), cv=(3, 1), holdouts=3)
    assert result["cv"]["r2_mean"] > 0.75  # a broken descriptor or target transform falls far below
    assert 0.5 < result["cv"]["coverage_68_mean"] <= 1.0
    assert result["grouped"]["r2_mean"] > 0.6 and result["holdout"]["folds"] == 1
    # grouping by formula would be a random split (1,266 formulas); chemical systems and prototypes are fewer
    assert len(set(data.groups)) == 1266
    assert result["grouped"]["groups"] < 1266 and result["grouped_prototype"]["groups"] < 1266
    assert len({(a, b) for a, b in zip(data.chemsys, data.groups, strict=True)}) == 1266
    spread = result["holdout_spread"]
    assert spread["seeds"] == 3 and spread["r2_min"] <= result["holdout"]["r2_mean"] <= spread["r2_max"]
    assert np.all(np.isfinite(result["_oof_mean"]))


def test_train_and_predict_cli(oxide_db_copy, tmp_path):
    """Trained without SrTiO3 and MgO, the model predicts them: compounds it has not seen, not training rows."""
    from tansaku.store.materials import add_to_subset
    from tansaku.store.tables import Subset

    db = oxide_db_copy.url
    with oxide_db_copy.session() as session:
        paper = select(Subset.material_id).where(Subset.name == "paper")
        kept = session.scalars(select(Material.id).where(Material.id.in_(paper),
                                                         Material.reduced_formula.not_in(["SrTiO3", "MgO"]))).all()
        add_to_subset(session, "paper-without-two", list(kept))
    model = tmp_path / "eps_e.pkl"
    result = invoke(db, "train", "--property", "eps_electronic", "--features", "composition", "--model", "et",
                    "--subset", "paper-without-two", "--cv", "2x1", "--out", str(model), "--json",
                    str(tmp_path / "m.json"), "--plots", str(tmp_path / "plots"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["n"] == 1264 and {"r2_mean", "r2_std", "mae_mean", "rmse_mean"} <= set(report["cv"])
    assert {"cv", "holdout", "grouped"} <= set(report) and report["model_id"].startswith("et-eps_electronic")
    assert (tmp_path / "plots" / "parity_eps_electronic.png").stat().st_size > 1000
    out = invoke(db, "predict", "--model", str(model), "--formula", "SrTiO3", "--formula", "MgO", "--json")
    rows = json.loads(out.output)
    assert rows[0]["log10"] and 3 < rows[0]["value"] < 9  # SrTiO3 ε∞ ≈ 6 in PBEsol
    assert rows[1]["value"] < rows[0]["value"]  # MgO is far less polarizable
    assert rows[0]["value_low"] < rows[0]["value"] < rows[0]["value_high"]

    # a batch with bad inputs: each is skipped with its reason, the good ones are still predicted, exit code 1
    (tmp_path / "broken.cif").write_text("data_x\n_cell_length_a 4.2\nnot a cif at all\n")
    Structure(Lattice.cubic(4.2), [{"Mg": 0.5, "Ca": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(tmp_path / "disordered.json"))
    rocksalt(4.81, "Ca", "O").to(
        filename=str(tmp_path / "CaO.cif"))
    out = invoke(db, "predict", "--model", str(model), "--formula", "SrTiO3", "--formula", "Xx2O3", "--formula",
                 "NaO3", "--structure", str(tmp_path / "broken.cif"), "--structure", str(tmp_path / "disordered.json"),
                 "--structure", str(tmp_path / "CaO.cif"), "--structure", str(tmp_path / "missing.cif"), "--json")
    assert out.exit_code == 1
    rows = {r["input"]: r for r in json.loads(out.stdout)}
    assert list(rows) == ["SrTiO3", "NaO3", str(tmp_path / "CaO.cif")]
    skipped = [line for line in out.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 4, out.stderr
    for expected in ("unknown element 'Xx'", "broken.cif", "disordered.json: "
                     "disordered or partially occupied structure", "missing.cif: no such file"):
        assert any(expected in line for line in skipped), (expected, out.stderr)
    # a formula no charge-balanced guess exists for is predicted, but flagged with the reason
    assert not rows["NaO3"]["in_domain"] and "cannot be charge-balanced" in rows["NaO3"]["domain"][0]
    assert rows["SrTiO3"]["in_domain"] and rows[str(tmp_path / "CaO.cif")]["in_domain"]


def test_predictions_outside_the_training_domain_are_flagged(oxide_db, tmp_path):
    """An oxide model still answers for a chloride, a carbide or a metal, but says why not to trust it."""
    model = tmp_path / "m.pkl"
    invoke(oxide_db.url, "train", "--property", "eps_electronic", "--model", "et", "--cv", "0", "--out", str(model))
    predictor = Predictor.load(model)
    out = invoke(oxide_db.url, "predict", "--model", str(model), "--formula", "NaCl", "--formula", "SiC",
                 "--formula", "BaZrO3", "--formula", "Fe3O4", "--formula", "PuO2", "--json")
    assert out.exit_code == 0, out.output
    rows = {r["input"]: r for r in json.loads(out.stdout)}
    assert "anion(s) outside the training set: Cl" in rows["NaCl"]["domain"]
    assert any("outside the training set: C" in note for note in rows["SiC"]["domain"])
    assert rows["BaZrO3"]["in_domain"], rows
    # Fe3O4 balances (Fe2+ and Fe3+); the database holds no iron oxide, and that is what is said
    notes = rows["Fe3O4"]["domain"]
    assert "element(s) never seen in training: Fe" in notes and not any("charge" in n for n in notes), notes
    assert "element(s) never seen in training: Pu" in rows["PuO2"]["domain"]
    # the same from a table of formulas, written to a CSV a spreadsheet opens: the domain notes in one cell
    table = tmp_path / "candidates.csv"
    table.write_text("id,formula\n1,NaCl\n2,BaZrO3\n3,Xx2O3\n")
    written = invoke(oxide_db.url, "predict", "--model", str(model), "--formula-table", str(table), "--out",
                     str(tmp_path / "p.csv"))
    assert written.exit_code == 1 and "unknown element 'Xx'" in written.stderr  # one skipped, the others written
    saved = {r["input"]: r for r in csv.DictReader((tmp_path / "p.csv").open())}
    assert list(saved) == ["NaCl", "BaZrO3"] and float(saved["BaZrO3"]["mean"]) == pytest.approx(rows["BaZrO3"]["mean"])
    assert saved["NaCl"]["in_domain"] == "False" and "outside the training set: Cl" in saved["NaCl"]["domain"]
    with pytest.raises(TansakuError, match=r"/proc/self/mem: cannot read as CSV \(\[Errno 5\] Input/output error"):
        invoke(oxide_db.url, "predict", "--model", str(model), "--formula-table", "/proc/self/mem")
    with pytest.raises(TansakuError, match=r"p.xlsx: the format is chosen by the suffix"):
        invoke(oxide_db.url, "predict", "--model", str(model), "--formula", "MgO", "--out", str(tmp_path / "p.xlsx"))
    # the distance check on its own: a training row is inside, a row far beyond every column is outside
    domain = predictor.meta["domain"]
    X = load_dataset(oxide_db, "eps_electronic", "composition").X
    assert domain.distances(X[:50]).max() < 1.5
    assert domain.distances(X[:1] * 50 + 1000)[0] > 1


def test_predict_db_missing_stores_ml_predictions(oxide_db_copy, tmp_path):
    oxide_db = oxide_db_copy
    db = oxide_db.url
    model = tmp_path / "m.pkl"
    invoke(db, "train", "--property", "eps_electronic", "--model", "et", "--cv", "0", "--out", str(model))
    new = Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.0), ["Ba", "Hf", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    new.to(filename=str(tmp_path / "BaHfO3.cif"))
    assert invoke(db, "import", "structures", str(tmp_path / "BaHfO3.cif")).exit_code == 0
    rows = json.loads(invoke(db, "predict", "--model", str(model), "--db-missing", "--json").output)
    assert len(rows) == 1 and rows[0]["value"] > 1
    with oxide_db.session() as session:
        stored = session.scalars(select(Property).where(Property.method.startswith("ml:et-eps_electronic"))).all()
    assert len(stored) == 1 and stored[0].value == pytest.approx(rows[0]["value"])
    assert stored[0].extra["std"] > 0 and stored[0].extra["in_domain"] in (True, False)
    # exports keep guesses apart from facts: measured values only, unless predictions are asked for by name
    out = tmp_path / "e.csv"
    for flags, value_expected in (((), False), (("--include-predictions",), True)):
        assert invoke(db, "db", "export", str(out), "--property", "eps_electronic", *flags).exit_code == 0
        exported = {r["formula"]: r for r in csv.DictReader(out.open())}
        assert exported["MgO"]["eps_electronic_method"] == "import:oxi_diel_db"
        assert bool(exported["BaHfO3"]["eps_electronic"]) is value_expected
        assert exported["BaHfO3"]["eps_electronic_method"].startswith("ml:") is value_expected


def test_bad_prediction_inputs(oxide_db, tmp_path):
    model_path = tmp_path / "m.pkl"
    invoke(oxide_db.url, "train", "--property", "eps_electronic", "--model", "rf", "--cv", "0", "--out",
           str(model_path))
    predictor = Predictor.load(model_path)
    assert "unknown element 'Xx'" in predictor.refusal("Xx2O3", "Xx2O3")
    assert "only noble gases" in predictor.refusal("Ne", "Ne")
    # what is merely unusual is not refused (it is predicted and flagged: the domain test)
    assert all(predictor.refusal(f, f) is None for f in ("NaO3", "Fe3O4", "CoAsS", "H2"))
    assert "uses structure descriptors" not in (predictor.refusal("SrTiO3", "SrTiO3") or "")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a model")
    with pytest.raises(TansakuError, match="not a tansaku model file"):
        load_model(junk)
    data = pickle.loads(model_path.read_bytes())
    data["meta"]["descriptor_version"] = "composition-0"
    old = tmp_path / "old.pkl"
    old.write_bytes(pickle.dumps(data))
    with pytest.raises(TansakuError, match="trained with descriptors composition-0"):
        load_model(old)
    # a model saved before the transform and the domain were recorded still predicts in the property's units
    data = pickle.loads(model_path.read_bytes())
    del data["meta"]["transform"], data["meta"]["domain"]
    older = tmp_path / "older.pkl"
    older.write_bytes(pickle.dumps(data))
    then, now = Predictor.load(older), Predictor.load(model_path)
    assert then.transform == "log10"
    a, b = then.predict(["SrTiO3", "NaO3"]), now.predict(["SrTiO3", "NaO3"])
    assert np.allclose(a.value, b.value) and 3 < a.value[0] < 9
    assert a.domain[0] == [] and "cannot be charge-balanced" in a.domain[1][0]
    with pytest.raises(TansakuError, match="no material has property 'nonexistent'"):
        load_dataset(oxide_db, "nonexistent", "composition")


def test_a_failed_save_leaves_the_previous_model_file_whole(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(40, 3)), rng.uniform(size=40)
    path = tmp_path / "m.pkl"
    fields = dict(property_name="band_gap", feature_set="composition", log_target=False, model_name="rf",
                  feature_names=["a", "b", "c"], training_hash="h", n_train=40)
    save_model(path, make_model("rf", trees=5).fit(X, y), **fields)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # the umask's, not a temp file's 0600
    plain.unlink()
    before = path.read_bytes()
    with pytest.raises(Exception, match="lambda"):  # a model that cannot be pickled fails midway through the write
        save_model(path, lambda: None, **fields)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]  # no partial file left beside it
    model, meta = load_model(path)
    assert meta["n_train"] == 40 and model.predict(X).shape == (40,)


def test_one_bad_stored_material_never_stops_a_batch(oxide_db_copy, tmp_path):
    """A material an older tansaku stored with an unknown element is skipped with its reason by predict
    --db-missing and al suggest; the good ones are still predicted, stored and ranked (exit status 1)."""
    db = oxide_db_copy
    model = tmp_path / "m.pkl"
    invoke(db.url, "train", "--property", "eps_electronic", "--model", "et", "--cv", "0", "--out", str(model))
    with db.session() as session:
        session.add(Material(source="old", source_id="x", formula="Xx1O1", reduced_formula="XxO", elements="O,Xx",
                             nelements=2))
        session.add(Material(source="old", source_id="y", formula="Ba1Hf1O3", reduced_formula="BaHfO3",
                             elements="Ba,Hf,O", nelements=3))
    out = invoke(db.url, "predict", "--model", str(model), "--db-missing", "--json")
    assert out.exit_code == 1, out.output
    assert [r["value"] > 1 for r in json.loads(out.stdout)] == [True]
    assert "(XxO): unknown element 'Xx'" in out.stderr
    with db.session() as session:
        stored = session.scalars(select(Property.material_id).where(Property.method.startswith("ml:"))).all()
    assert len(stored) == 1
    ranked = invoke(db.url, "al", "suggest", "--model", str(model), "--range", "3", "6", "--n", "1", "--json")
    assert ranked.exit_code == 1 and json.loads(ranked.stdout)[0]["formula"] == "BaHfO3"
    assert "unknown element 'Xx'" in ranked.stderr


def test_a_metal_screen_flags_a_charge_balanced_metal_the_oxide_model_cannot_tell(oxide_db, tmp_path):
    """TiO (Ti2+ O2-) passes charge balance; the oxide database holds no metal, so only a screen trained on a
    table with metals flags it. 4,000 rows of matbench's PBE gaps (without TiO) are enough for that."""
    from tests.conftest import matbench_gap_sample

    table = matbench_gap_sample(tmp_path)
    plain, screened = tmp_path / "plain.pkl", tmp_path / "screened.pkl"
    base = ("train", "--property", "eps_electronic", "--subset", "paper", "--model", "et", "--cv", "0", "--out")
    assert invoke(oxide_db.url, *base, str(plain)).exit_code == 0
    result = invoke(oxide_db.url, *base, str(screened), "--metal-screen", str(table))
    assert result.exit_code == 0, result.output
    assert "metal screen:" in result.output

    def notes(model) -> dict[str, list[str]]:
        out = invoke(oxide_db.url, "predict", "--model", str(model), "--formula", "TiO", "--formula", "MgO",
                     "--json")
        return {row["input"]: row["domain"] for row in json.loads(out.output)}

    assert not any("metal" in note for note in notes(plain)["TiO"])
    flagged = notes(screened)
    assert any(note.startswith("likely a metal (P = ") and "gaps.csv" in note for note in flagged["TiO"])
    assert not any("metal" in note for note in flagged["MgO"])

    no_metals = tmp_path / "insulators.csv"
    rows = list(csv.reader(table.open()))[1:401]
    no_metals.write_text("formula,gap\n" + "".join(f"{f},{g}\n" for f, g in rows if float(g) > 0.5))
    with pytest.raises(TansakuError, match="0 metals .* needs at least 20 of each"):
        invoke(oxide_db.url, *base, str(tmp_path / "x.pkl"), "--metal-screen", str(no_metals))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("formula,gap\nXx2O,0\n")
    with pytest.raises(TansakuError, match=r"unknown.csv: 0 metals .*\(Xx2O: .*unknown element 'Xx'"):
        invoke(oxide_db.url, *base, str(tmp_path / "x.pkl"), "--metal-screen", str(unknown))
    assert not (tmp_path / "x.pkl").exists()  # refused before a model is trained or written
