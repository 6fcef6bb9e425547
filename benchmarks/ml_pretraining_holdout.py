"""How much of lgbm-attn's composition R² comes from pretraining on the test oxides' own compositions, and from
settings chosen on the benchmark's folds? (issue 30)

lgbm-attn's network is pretrained on the 132,752 matbench formation energies, which hold the compositions of
almost every one of the paper's 1,266 oxides (another property, but inputs the network has seen), and its blend
weight, network count and fine-tuning epochs were picked on the folds `ml_dielectric.py` reports. Here, in one
run, on the same evaluation folds (the first repetition of ml_dielectric.py's 5x3 CV: 5 folds, RepeatedKFold
seed 0, so the rows are paired):

- **seen**: pretrained on every formation energy, settings as shipped (3 networks, weight 0.5, 150 epochs);
- **unseen**: pretrained with every paper oxide's composition left out (`tansaku pretrain --exclude-subset
  paper`), settings as shipped;
- **unseen, settings chosen elsewhere**: the same weights, with network count (1-5), blend weight (0.3-0.7) and
  fine-tuning epochs (100, 150, 200) chosen by mean R² on a 3-fold partition with another seed (1), folds the
  evaluation does not use; the chosen settings are then evaluated on the evaluation folds.

Both pretrainings are made through the product (`import csv`, then pretrain with and without the held-out
subset) in one database that also holds the oxides. The selection partition shares data with the evaluation
(every oxide is in both); what it removes is the choice made on the very folds that are scored. A fully nested
choice (inside each evaluation fold's training part) would cost about five times as much.

Run: .venv/bin/python benchmarks/ml_pretraining_holdout.py [--properties eps_electronic eps_ionic]
     (a smoke test: --epochs-scale 0.02 --pretrain-epochs 1)
A property takes about 1.5 hours on 2 cores and each pretraining up to half an hour, so both pretrainings and
every fold's predictions are checkpointed under --work as they finish; the same command run again after a kill
computes only what is missing. A checkpoint is reused only when made from the same data, settings and code (a
fingerprint of the modules that decide it, and the pretrained weights' digest for the folds).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, RepeatedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    RESULTS,
    SHARED,
    code_fingerprint,
    data_fingerprint,
    run_of,
    save_checkpoint,
    stored_result,
    this_run,
    write_results,
)
from tansaku.features import tokens  # noqa: E402
from tansaku.models import attention, dataset, learners, stacking  # noqa: E402
from tansaku.models.attention import AttentionRegressor, load_pretrained, pretrain, save_pretrained  # noqa: E402
from tansaku.models.dataset import load_dataset, pretraining_values  # noqa: E402
from tansaku.models.learners import make_model  # noqa: E402
from tansaku.sources.csv_table import import_csv  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import open_database  # noqa: E402

SHIPPED = {"networks": 3, "weight": 0.5, "epochs": 150}
NETWORKS = (1, 2, 3, 4, 5)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
EPOCHS = (100, 150, 200)
COLUMNS = 2 * tokens.SLOTS


CODE = code_fingerprint(attention, dataset, learners, stacking, tokens)  # what decides a checkpoint's numbers


def weights_for(db, exclude: str | None, epochs: int, work: Path) -> dict:
    """Pretrained weights; from `work` when this code pretrained them on the same values for as many epochs."""
    rows, held_out = pretraining_values(db, "e_form", leave_out=exclude)
    formulas, values = [f for f, _ in rows], np.array([v for _, v in rows], dtype=float)
    key = {"code": CODE, "data": data_fingerprint(np.array(formulas, dtype=str), values), "epochs": epochs,
           "exclude": exclude}
    path = work / f"pretrained-{exclude or 'all'}.pt"
    stored = stored_result(path.with_suffix(".json"), key)
    if stored is not None and path.exists():
        weights = load_pretrained(path)
        if weights["meta"]["sha256"] == stored["sha256"]:
            print("pretrained (checkpoint)", weights["meta"], flush=True)
            return weights
    weights = pretrain(formulas, values, "e_form", epochs)
    if exclude:
        weights["meta"]["excluded"] = {"subset": exclude, "values": held_out}
    save_pretrained(path, weights)
    weights = load_pretrained(path)  # the file's digest in meta: what the fold checkpoints are keyed by
    save_checkpoint(path.with_suffix(".json"), key, {"sha256": weights["meta"]["sha256"]})
    print("pretrained", weights["meta"], flush=True)
    return weights


def fold_outputs(X, y, train, test, weights: dict, epochs: list[int], networks: int) -> dict:
    """The lgbm-lin part's and each network's test predictions for one fold: (base, {epochs: nets × rows})."""
    model = make_model("lgbm-attn", pretrained=weights)
    model.set_params(learner__network__seeds=networks, learner__network__epochs=epochs[0])
    fitted = clone(model).fit(X[train], y[train])
    train_filled, test_filled = fitted._filled(X[train]), fitted._filled(X[test])
    nets = {epochs[0]: fitted.learner_.network_.predict_samples(test_filled[:, -COLUMNS:])}
    for count in epochs[1:]:  # other fine-tuning lengths: the shipped network count (time)
        network = AttentionRegressor(pretrained=weights, seeds=SHIPPED["networks"], epochs=count)
        network.fit(train_filled[:, -COLUMNS:], y[train])
        nets[count] = network.predict_samples(test_filled[:, -COLUMNS:])
    return {"base": fitted.learner_.base_.predict(test_filled[:, :-COLUMNS]), "nets": nets}


def checkpointed_fold(path: Path, X, y, train, test, weights: dict, epochs: list[int], networks: int) -> dict:
    """`fold_outputs` from its checkpoint when made by this code from the same rows, weights and settings, with the
    seconds it took when it was computed (`seconds`) and whether it came from a checkpoint (`cached`)."""
    key = {"format": 2, "code": CODE, "fold_code": hashlib.sha256(inspect.getsource(fold_outputs).encode()).hexdigest()[:16],
           "data": data_fingerprint(X, y, train, test), "weights": weights["meta"]["sha256"],
           "epochs": epochs, "networks": networks}
    stored, cached = stored_result(path, key), True
    if stored is None:
        start, cached = time.perf_counter(), False
        out = fold_outputs(X, y, train, test, weights, epochs, networks)
        stored = {"base": out["base"].tolist(), "nets": {str(e): v.tolist() for e, v in out["nets"].items()},
                  "seconds": round(time.perf_counter() - start, 1)}
        save_checkpoint(path, key, stored)
    return {"base": np.array(stored["base"]), "nets": {int(e): np.array(v) for e, v in stored["nets"].items()},
            "seconds": stored["seconds"], "cached": cached}


def blended(outputs: dict, settings: dict) -> np.ndarray:
    nets = outputs["nets"][settings["epochs"]][: settings["networks"]].mean(0)
    return (1 - settings["weight"]) * outputs["base"] + settings["weight"] * nets


def mean_r2(y, folds: list[tuple], outputs: list[dict], settings: dict) -> float:
    return float(np.mean([r2_score(y[test], blended(out, settings)) for (_, test), out in zip(folds, outputs,
                                                                                              strict=True)]))


def scaled(epochs: tuple[int, ...], scale: float) -> dict[int, int]:
    return {e: max(1, round(e * scale)) for e in epochs}


def one_property(db, prop: str, seen: dict, unseen: dict, scale: float, work: Path, say) -> dict:
    data = load_dataset(db, prop, "composition+ions+tokens", subset="paper")
    X, y = data.X, data.y
    epochs = scaled(EPOCHS, scale)  # nominal → run (they differ only in a smoke test)
    start, spent, cached = time.perf_counter(), [], []
    # choose on a partition the evaluation does not use
    selection_folds = list(KFold(3, shuffle=True, random_state=1).split(X))
    selection = []
    for k, (train, test) in enumerate(selection_folds):
        out = checkpointed_fold(work / prop / f"selection-{k}.json", X, y, train, test, unseen,
                                [epochs[150], epochs[100], epochs[200]], max(NETWORKS))
        spent.append(out["seconds"])
        cached.append(out["cached"])
        selection.append({"base": out["base"], "nets": {e: out["nets"][epochs[e]] for e in EPOCHS}})
        say(f"{prop} selection fold {k + 1}/3 {time.perf_counter() - start:.0f} s")
    grid = [{"networks": n, "weight": w, "epochs": e} for e in EPOCHS for n in NETWORKS for w in WEIGHTS
            if e == SHIPPED["epochs"] or n <= SHIPPED["networks"]]
    scores = [mean_r2(y, selection_folds, selection, s) for s in grid]
    chosen = grid[int(np.argmax(scores))]
    say(f"{prop} chosen {chosen} (selection R² {max(scores):.4f}; shipped {mean_r2(y, selection_folds, selection, SHIPPED):.4f})")
    # evaluate on the benchmark's folds
    folds = list(RepeatedKFold(n_splits=5, n_repeats=1, random_state=0).split(X))
    runs = {"seen": [], "unseen": []}
    extra = [epochs[chosen["epochs"]]] if chosen["epochs"] != 150 else []
    for k, (train, test) in enumerate(folds):
        for name, weights in (("seen", seen), ("unseen", unseen)):
            out = checkpointed_fold(work / prop / f"evaluation-{k}-{name}.json", X, y, train, test, weights,
                                    [epochs[150], *(extra if name == "unseen" else [])],
                                    max(NETWORKS) if name == "unseen" else SHIPPED["networks"])
            spent.append(out["seconds"])
            cached.append(out["cached"])
            runs[name].append({"base": out["base"], "nets": {e: out["nets"][epochs[e]] for e in EPOCHS
                                                             if epochs[e] in out["nets"]}})
        say(f"{prop} evaluation fold {k + 1}/5 {time.perf_counter() - start:.0f} s")
    per_fold = {
        "seen, shipped settings": [r2_score(y[te], blended(o, SHIPPED)) for (_, te), o in zip(folds, runs["seen"], strict=True)],
        "unseen, shipped settings": [r2_score(y[te], blended(o, SHIPPED))
                                     for (_, te), o in zip(folds, runs["unseen"], strict=True)],
        "unseen, settings chosen elsewhere": [r2_score(y[te], blended(o, chosen))
                                              for (_, te), o in zip(folds, runs["unseen"], strict=True)],
        "lgbm-lin part alone (unseen run)": [r2_score(y[te], o["base"]) for (_, te), o in zip(folds, runs["unseen"], strict=True)],
    }
    best_on_evaluation = max(mean_r2(y, folds, runs["unseen"], s) for s in grid if s["epochs"] in (150, chosen["epochs"]))
    return {"n": int(len(y)), "seconds": round(sum(spent)), "folds_from_checkpoints": f"{sum(cached)} of {len(cached)}", "chosen": chosen, "run": this_run(),
            "pretraining": {"seen": seen["meta"], "unseen": unseen["meta"]},
            "selection_r2": {"chosen": max(scores), "shipped": mean_r2(y, selection_folds, selection, SHIPPED)},
            "r2": {name: float(np.mean(v)) for name, v in per_fold.items()},
            "r2_folds": {name: [float(x) for x in v] for name, v in per_fold.items()},
            "best_grid_point_on_evaluation_folds": best_on_evaluation}


def markdown(results: dict) -> str:
    props = list(results["properties"])
    first = results["properties"][props[0]]["pretraining"]
    lines = ["# lgbm-attn without the test compositions in pretraining, and with settings chosen elsewhere (issue 30)",
             "",
             "Mean R² (log10 targets, composition descriptors, the paper's oxides) over the 5 folds of the first "
             "repetition of `ml_dielectric.py`'s 5x3 CV; every row sees the same folds (paired). "
             f"Seen: pretrained on {first['seen']['n']:,} formation energies. Unseen: pretrained on "
             f"{first['unseen']['n']:,}, the {first['unseen']['excluded']['values']:,} values whose composition is "
             "one of the paper oxides' left out.", "",
             "| run | " + " | ".join(props) + " |", "| --- |" + " --- |" * len(props)]
    for name in results["properties"][props[0]]["r2"]:
        cells = []
        for p in props:
            folds = np.array(results["properties"][p]["r2_folds"][name])
            diff = folds - np.array(results["properties"][p]["r2_folds"]["seen, shipped settings"])
            cells.append(f"{folds.mean():.4f}" + ("" if name.startswith("seen") else
                                                  f" ({diff.mean():+.4f}; folds {diff.min():+.3f} to {diff.max():+.3f})"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "In brackets: the paired difference from the first row (mean, and its range over the 5 folds).", "",
              "| | " + " | ".join(props) + " |", "| --- |" + " --- |" * len(props)]
    for label, get in (
            ("settings chosen on the 3-fold selection partition (seed 1)",
             lambda r: "{networks} network{s}, weight {weight}, {epochs} epochs".format(
                 **r["chosen"], s="" if r["chosen"]["networks"] == 1 else "s")),
            ("selection R²: chosen / shipped",
             lambda r: f"{r['selection_r2']['chosen']:.4f} / {r['selection_r2']['shipped']:.4f}"),
            ("best grid point scored on the evaluation folds themselves",
             lambda r: f"{r['best_grid_point_on_evaluation_folds']:.4f}"),
            ("seconds (selection and evaluation, summed over the folds as computed)", lambda r: str(r["seconds"])),
            ("pretraining seconds, seen / unseen ({} epochs)".format(first["seen"]["epochs"]),
             lambda r: f"{r['pretraining']['seen']['seconds']:.0f} / {r['pretraining']['unseen']['seconds']:.0f}"),
            ("machine", lambda r: r["run"].get("platform", "not recorded")),
            ("folds from checkpoints of earlier invocations", lambda r: r.get("folds_from_checkpoints", "0")),
            ("run", lambda r: "{commit}, {date}".format(**run_of(r)))):
        lines.append(f"| {label} | " + " | ".join(get(results["properties"][p]) for p in props) + " |")
    lines += ["", f"Shipped settings: {SHIPPED['networks']} networks, weight {SHIPPED['weight']}, "
              f"{SHIPPED['epochs']} fine-tuning epochs. Grid: networks {NETWORKS} and weights {WEIGHTS} at "
              f"{SHIPPED['epochs']} epochs; epochs {EPOCHS} with up to {SHIPPED['networks']} networks (the best grid "
              "point on the evaluation folds is searched over the epochs evaluated there). Each property's column "
              "is its own run, with its own two pretrainings (same data and seeds); seconds are that run's, on its "
              "machine, with whatever else ran beside it.", "",
              "Commands: " + "; ".join(dict.fromkeys(f"`{run_of(results['properties'][p])['command']}`"
                                                     for p in props))]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--properties", nargs="+", default=["eps_ionic", "eps_electronic"])
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="Multiplies every fine-tuning epoch count "
                        "(a smoke test: 0.02; its results go to ml_pretraining_holdout_smoke).")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "ml_pretraining_holdout",
                        help="Where the pretrained weights and each fold's predictions are checkpointed.")
    parser.add_argument("--merge", action="store_true", help="Keep the other properties' rows of the committed "
                        "results (each row keeps its own run).")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    name = "ml_pretraining_holdout" + ("" if args.epochs_scale == 1.0 else "_smoke")
    previous = json.loads((RESULTS / f"{name}.json").read_text()) if args.merge else {"properties": {}}
    db = open_database(Path(tempfile.mkdtemp()) / "holdout.db")
    import_oxi_diel_db(db, SHARED / "datasets" / "oxi_diel_db")
    import_csv(db, SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz", "e_form", "eV/atom")
    work = args.work / name
    seen = weights_for(db, None, args.pretrain_epochs, work)
    unseen = weights_for(db, "paper", args.pretrain_epochs, work)
    results = {"epochs_scale": args.epochs_scale, "properties": {
        p: row for p, row in previous["properties"].items() if p not in args.properties}}
    for prop in args.properties:  # written after each property: a run cut short keeps what it finished
        results["properties"][prop] = one_property(db, prop, seen, unseen, args.epochs_scale, work,
                                                   lambda s: print(s, flush=True))
        write_results(name, results, markdown(results))


if __name__ == "__main__":
    main()
