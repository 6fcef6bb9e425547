"""lgbm-attn: element tokens, mat2vec vectors downloaded for real, the attention network pretrained and
fine-tuned for real (tiny epochs), and the commands that drive them."""

import csv
import gzip
import json
import pickle
import re

import numpy as np
import pytest
from pymatgen.core import Composition, Structure
from sklearn.metrics import r2_score

from tansaku import TansakuError
from tansaku.features import tokens
from tansaku.features.element_vectors import mat2vec_table, read_mat2vec
from tansaku.features.sets import feature_names, raw_features
from tansaku.models.attention import AttentionRegressor, load_pretrained, pretrain
from tests.conftest import SHARED, need_shared
from tests.test_cli import invoke

E_FORM = SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz"


@pytest.fixture(scope="module")
def e_form_rows() -> list[tuple[str, float]]:
    with gzip.open(need_shared(E_FORM), "rt") as handle:
        rows = list(csv.reader(handle))[1:]
    rng = np.random.default_rng(0)
    return [(rows[i][0], float(rows[i][1])) for i in rng.choice(len(rows), 3000, replace=False)]


def test_tokens_hold_each_element_and_its_fraction_largest_first():
    row = tokens.element_tokens(["SrTiO3"])[0]
    assert list(row[:6]) == [8, pytest.approx(0.6), 22, pytest.approx(0.2), 38, pytest.approx(0.2)]
    assert not row[6:].any()
    assert feature_names("composition+ions+tokens")[-1] == "token_7_fraction"
    assert raw_features(["SrTiO3"], "composition+tokens").shape[1] == len(feature_names("composition+tokens"))
    with pytest.raises(TansakuError, match="9 elements; element tokens hold at most 8"):
        tokens.element_tokens(["LiBeNaMgAlKCaSrO9"])


def test_mat2vec_vectors_come_from_the_checksummed_wheel(tmp_path):
    table = mat2vec_table()
    known = np.abs(table).sum(axis=1) > 0
    assert table.shape == (119, 200) and known[1:].all() and not known[0]  # H to Og; row 0 is padding
    assert np.abs(table[known].mean(axis=0)).max() < 1e-6  # standardized over the elements
    assert np.corrcoef(table[37], table[55])[0, 1] > np.corrcoef(table[37], table[26])[0, 1]  # Rb nearer Cs than Fe
    broken = tmp_path / "not-a-wheel.whl"
    broken.write_text("x")
    with pytest.raises(TansakuError, match="not-a-wheel.whl: not the elementembeddings wheel"):
        read_mat2vec(broken)


def test_the_wheel_is_downloaded_once_and_checked(private_cache, http_server, tmp_path, monkeypatch):
    """The download itself, against a file server on loopback: fetched into an empty cache, checked against the
    published SHA-256; a wheel with one byte changed is refused and nothing stays in the cache."""
    from tansaku.features import element_vectors

    root, base = http_server
    genuine = (private_cache / element_vectors.WHEEL).read_bytes()
    (root / element_vectors.WHEEL).write_bytes(genuine)
    monkeypatch.setenv("TANSAKU_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(element_vectors, "WHEEL_URL", f"{base}/{element_vectors.WHEEL}")
    element_vectors.mat2vec_table.cache_clear()
    try:
        table = element_vectors.mat2vec_table()
        assert table.shape == (119, 200)
        assert (tmp_path / "empty" / element_vectors.WHEEL).read_bytes() == genuine
        (root / element_vectors.WHEEL).write_bytes(genuine[:-1] + bytes([genuine[-1] ^ 1]))
        monkeypatch.setenv("TANSAKU_CACHE", str(tmp_path / "second"))
        element_vectors.mat2vec_table.cache_clear()
        with pytest.raises(TansakuError, match="SHA-256|sha256|checksum"):
            element_vectors.mat2vec_table()
        assert not (tmp_path / "second" / element_vectors.WHEEL).exists()
    finally:
        element_vectors.mat2vec_table.cache_clear()


def test_the_network_learns_formation_energies_and_pretraining_helps_on_few_data(e_form_rows, tmp_path):
    formulas, y = zip(*e_form_rows, strict=True)
    X = tokens.element_tokens(formulas)
    y = np.array(y)
    train, few, test = slice(0, 2400), slice(2400, 2460), slice(2600, 3000)
    weights = pretrain(list(formulas[train]), y[train], "e_form", epochs=4)
    assert weights["meta"]["n"] == 2400 and weights["meta"]["property"] == "e_form"
    scratch = AttentionRegressor(seeds=1, epochs=30).fit(X[few], y[few])
    started = AttentionRegressor(weights, seeds=2, epochs=30).fit(X[few], y[few])
    r2_scratch = r2_score(y[test], scratch.predict(X[test]))
    mean, std = started.predict_dist(X[test])
    r2_started = r2_score(y[test], mean)
    assert r2_started > 0.7 and r2_started > r2_scratch + 0.1, (r2_started, r2_scratch)
    assert (std > 0).all() and started.predict_samples(X[test]).shape == (2, 400)
    assert started.pretrained_meta_["n"] == 2400


def test_pretrain_train_predict_from_the_command_line(tmp_path, oxi_dir, e_form_rows):
    db = str(tmp_path / "attn.db")
    mini = tmp_path / "mini" / "data"
    mini.mkdir(parents=True)
    files = sorted((oxi_dir / "data").glob("*.json"))[:150]
    for path in files:
        (mini / path.name).write_bytes(path.read_bytes())
    (mini.parent / "paper_subset_ids.txt").write_text("".join(f"{path.stem}\n" for path in files[:100]))
    assert invoke("--db", db, "import", "oxi-diel-db", str(mini.parent)).exit_code == 0
    # the formation energies of 600 random compositions and of every oxide in the file's 150 (when matbench has it)
    reduced = {path: Structure.from_dict(json.loads(path.read_text())["structure"]).composition.reduced_formula
               for path in files}
    paper, oxides = {reduced[path] for path in files[:100]}, set(reduced.values())
    element_sets = {frozenset(Composition(formula).chemical_system.split("-")) for formula in oxides}
    with gzip.open(need_shared(E_FORM), "rt") as handle:  # parsed only where the elements match (7 s → 0.3 s)
        same = [(f, float(v)) for f, v in list(csv.reader(handle))[1:]
                if frozenset(re.findall(r"[A-Z][a-z]?", f)) in element_sets
                and Composition(f).reduced_formula in oxides]
    rows = e_form_rows[:600] + same
    table = tmp_path / "e_form.csv"
    with table.open("w", newline="") as handle:
        csv.writer(handle).writerows([("formula", "e_form"), *rows])
    assert invoke("--db", db, "import", "csv", str(table), "--property", "e_form").exit_code == 0

    weights = tmp_path / "e_form.pt"
    result = invoke("--db", db, "pretrain", "--property", "e_form", "--epochs", "2", "--out", str(weights))
    assert result.exit_code == 0, result.output
    assert f"pretrained on {len(rows)} values of e_form" in result.output
    assert load_pretrained(weights)["meta"]["epochs"] == 2
    # held out: every value whose composition is a paper oxide's, and only those
    held = sum(Composition(f).reduced_formula in paper for f, _ in rows)
    assert 20 < held < sum(Composition(f).reduced_formula in oxides for f, _ in rows)
    unseen = tmp_path / "e_form_unseen.pt"
    result = invoke("--db", db, "pretrain", "--property", "e_form", "--epochs", "2", "--exclude-subset", "paper",
                    "--out", str(unseen))
    assert result.exit_code == 0, result.output
    assert f"left out {held} values" in result.output
    meta = load_pretrained(unseen)["meta"]
    assert meta["n"] == len(rows) - held and meta["excluded"] == {"subset": "paper", "values": held}
    with pytest.raises(TansakuError, match="subset 'papre' has no materials"):
        invoke("--db", db, "pretrain", "--property", "e_form", "--exclude-subset", "papre", "--out", str(unseen))

    model = tmp_path / "eps.pkl"
    result = invoke("--db", db, "train", "--property", "eps_electronic", "--model", "lgbm-attn", "--cv", "0",
                    "--pretrained", str(weights), "--out", str(model))
    assert result.exit_code == 0, result.output
    with model.open("rb") as handle:
        meta = pickle.load(handle)["meta"]
    assert meta["descriptors"] == "composition+ions+tokens"
    assert meta["pretrained"]["sha256"] == load_pretrained(weights)["meta"]["sha256"]
    weights.unlink()  # the saved model carries its network: predicting needs no other file
    rows = json.loads(invoke("predict", "--model", str(model), "--formula", "SrTiO3", "--formula", "MgO",
                             "--json").output)
    values = {r["input"]: r["value"] for r in rows}
    assert values["SrTiO3"] > values["MgO"] > 1 and all(r["std"] > 0 for r in rows)


def test_pretraining_and_its_weights_refuse_what_they_cannot_use(tmp_path, e_form_rows):
    db = str(tmp_path / "small.db")
    table = tmp_path / "e_form.csv"
    with table.open("w", newline="") as handle:
        csv.writer(handle).writerows([("formula", "e_form"), *e_form_rows[:3]])
    assert invoke("--db", db, "import", "csv", str(table), "--property", "e_form").exit_code == 0
    with pytest.raises(TansakuError, match="3 usable values of 'e_form'; pretraining needs a large"):
        invoke("--db", db, "pretrain", "--property", "e_form", "--out", str(tmp_path / "w.pt"))
    assert not (tmp_path / "w.pt").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torch")
    with pytest.raises(TansakuError, match="junk.pt: not a pretrained-weights file"):
        load_pretrained(junk)
    with pytest.raises(TansakuError, match="no such pretrained-weights file"):
        load_pretrained(tmp_path / "missing.pt")
    from tansaku.models.learners import make_model

    with pytest.raises(TansakuError, match="'rf' has none"):
        make_model("rf", pretrained={"state": {}})
