"""`tansaku train` and `tansaku predict`: learn stored properties, predict new materials."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from tansaku import TansakuError
from tansaku.cli.common import STRUCTURE_FILES, console, database, err_console, finish_batch, progress_bar
from tansaku.features.sets import FEATURE_SETS, base_columns, strain_columns
from tansaku.files import table_format, write_table
from tansaku.models.dataset import load_dataset, pretraining_values
from tansaku.models.domain import Domain
from tansaku.models.evaluation import evaluate, parse_cv
from tansaku.models.learners import DEFAULT_MODEL, MODELS, make_model, model_feature_set
from tansaku.models.metal_screen import MetalScreen
from tansaku.models.persistence import save_model
from tansaku.models.predictor import Predictor, read_inputs
from tansaku.sources.csv_table import formulas_in
from tansaku.store.filters import missing_property

MIN_TRAIN = 3
# grouped: whole chemical systems (element sets) held out; grouped_prototype: whole anonymized-formula + space
# group prototypes held out
PROTOCOLS = ("cv", "holdout", "grouped", "grouped_prototype")


def train(
    property_name: str = typer.Option(..., "--property", help="Stored property: eps_electronic, eps_ionic, band_gap, "
                                      "e_form, ... (dielectric constants are learned as log10)."),
    features: str = typer.Option("composition", help=f"Descriptor set: {', '.join(FEATURE_SETS)}."),
    model_name: str = typer.Option(DEFAULT_MODEL, "--model", help=f"Learner: {', '.join(MODELS)}. The default, "
                                   f"{DEFAULT_MODEL}, was the most accurate learner that needs nothing beyond the base "
                                   "install on both descriptor sets (benchmarks/results/ml_dielectric.md); rf is the "
                                   "paper's random forest."),
    transform: str = typer.Option("auto", help="Learn the values as they are (none) or their log10 (log10). auto: "
                                  "log10 for dielectric constants (as the reference paper) and for any positive "
                                  "property whose largest value is 10x its median or more; none otherwise. The "
                                  "choice is saved in the model and undone by every prediction."),
    subset: str = typer.Option(None, help="Train only on a subset, e.g. 'paper' (the reference's 1,266 oxides)."),
    cv: str = typer.Option("5x3", help="Repeated K-fold as KxR; '0' skips evaluation."),
    out: Path = typer.Option(..., help="Where to save the trained model."),
    json_out: Path = typer.Option(None, "--json", help="Write metrics (cv, holdout, grouped) as JSON."),
    plots: Path = typer.Option(None, help="Directory for parity and importance plots (PNG)."),
    seed: int = typer.Option(0, help="Random seed for splits and learners."),
    pretrained: Path = typer.Option(None, help="Weights from 'tansaku pretrain' to start lgbm-attn's network from "
                                    "(without them it learns from scratch, usually a little less accurate)."),
    metal_screen: Path = typer.Option(None, help="A composition,band-gap CSV with metals at 0 eV (e.g. matbench's "
                                      "matbench_mp_gap.csv.gz): a classifier trained on it flags predictions for "
                                      "compositions likely to be metals (P >= 0.5), which have no static ε. The "
                                      "oxide database holds no metal, so a model trained on it cannot tell one."),
) -> None:
    """Train a model with uncertainty on the database, report metrics, save it.

    Metrics come from repeated K-fold CV, the reference paper's single 80/20 split, and K-fold splits that hold
    out whole chemical systems (grouped: no element set on both sides) and whole prototypes (grouped_prototype:
    anonymized formula and space group), which say how the model does on chemistry it has not seen. Metrics are
    in the model's units (log10 for dielectric constants).

    Example: tansaku train --property eps_electronic --features structure --model blend --subset paper --out e.pkl

    With --metal-screen matbench_mp_gap.csv.gz, predictions for compositions likely to be metals are flagged.

    lgbm-attn reads compositions with a neural network as well; pretrain it first on a large property
    (see 'tansaku pretrain --help'), then: tansaku train --property eps_ionic --model lgbm-attn
    --pretrained e_form.pt --subset paper --out ion.pkl
    """
    db = database(create=False)
    weights = _pretrained(pretrained) if pretrained else None
    model = make_model(model_name, seed, pretrained=weights)
    data = load_dataset(db, property_name, model_feature_set(model, features), subset,
                        progress=progress_bar("descriptors"), transform=transform)
    console.print(f"target: {data.transform} ({data.transform_reason})"
                  + (f"; left out {data.left_out} values <= 0" if data.left_out else ""))
    if len(data.y) < MIN_TRAIN:
        raise TansakuError(f"{len(data.y)} material(s) with {property_name!r}: a model needs at least {MIN_TRAIN}")
    screen = None
    if metal_screen is not None:  # before the model: a table it cannot use fails in seconds, not after training
        with console.status(f"metal screen: training on {metal_screen.name}"):
            screen = MetalScreen.from_table(metal_screen, seed)
        console.print(f"metal screen: {screen.n_compositions} compositions of {metal_screen.name}, "
                      f"{screen.metal_fraction:.0%} metals")
    folds = parse_cv(cv, len(data.y))
    result: dict = {"n": len(data.y)}
    if folds:
        result = evaluate(model, data.X, data.y, data.groupings(), folds, seed, progress=progress_bar(f"CV {cv}"))
        undefined = [key for key in PROTOCOLS if key in result
                     and not np.isfinite(result[key]["r2_mean"])]
        if undefined:
            err_console.print(f"[yellow]warning[/] R² is undefined under {', '.join(undefined)} (a test fold whose "
                              "values are all equal); the model is saved, its metrics say nan", soft_wrap=True)
    fitted = model.fit(data.X, data.y)
    domain = Domain.fit(list(data.groups), base_columns(data.X, features), seed, strain_columns(data.X, features))
    domain.metal_screen = screen
    summary = {key: {m: result[key][f"{m}_mean"] for m in ("r2", "mae", "rmse")} | {"r2_std": result[key]["r2_std"]}
               for key in PROTOCOLS if key in result}
    meta = save_model(out, fitted, property_name=property_name, feature_set=features, transform=data.transform,
                      model_name=model_name, feature_names=data.feature_names, training_hash=data.hash(),
                      n_train=len(data.y), metrics=summary,
                      extra={"domain": domain, **({"pretrained": weights["meta"]} if weights else {}),
                             **_drawable(data, result, fitted, seed)})
    table = Table("protocol", "R²", "± std", "MAE", "RMSE", "68 % cover", "95 % cover",
                  title=f"{model_name} on {property_name} ({features}), n = {len(data.y)}"
                  + (" (log10)" if data.log_target else ""))
    for key in PROTOCOLS:
        if key in result:
            m = result[key]
            table.add_row(key, f"{m['r2_mean']:.3f}", f"{m['r2_std']:.3f}", f"{m['mae_mean']:.3f}",
                          f"{m['rmse_mean']:.3f}", f"{m['coverage_68_mean']:.2f}", f"{m['coverage_95_mean']:.2f}")
    console.print(table)
    console.print(f"saved model {meta['id']} to {out}")
    if json_out:
        clean = {k: v for k, v in result.items() if not k.startswith("_")}
        json_out.write_text(json.dumps({**clean, "model_id": meta["id"], "n": len(data.y), "model": model_name,
                                        "transform": data.transform, "transform_reason": data.transform_reason},
                                       indent=1))
    if plots:
        from tansaku.plots.figures import importance, parity

        plots.mkdir(parents=True, exist_ok=True)
        label = f"log10 {property_name}" if data.log_target else property_name
        if "_oof_mean" in result:
            parity(data.y, result["_oof_mean"], result["_oof_std"], plots / f"parity_{property_name}.png", label,
                   result["cv"]["r2_mean"])
        importance(data.feature_names, fitted.feature_importances_, plots / f"importance_{property_name}.png",
                   f"impurity/gain importance: {property_name}")
        console.print(f"plots in {plots}")


OOF_KEPT = 20_000  # out-of-fold points kept in the model file for its parity plot (a sample beyond that)
IMPORTANCES_KEPT = 30


def _drawable(data, result: dict, fitted, seed: int) -> dict:
    """What the web pages draw without refitting: a sample of the out-of-fold predictions and the top importances."""
    out: dict = {}
    if "_oof_mean" in result:
        keep = np.arange(len(data.y))
        if len(keep) > OOF_KEPT:
            keep = np.sort(np.random.default_rng(seed).choice(keep, OOF_KEPT, replace=False))
        out["oof"] = {key: np.asarray(values, dtype=float)[keep].tolist()
                      for key, values in (("y", data.y), ("mean", result["_oof_mean"]), ("std", result["_oof_std"]))}
    values = getattr(fitted, "feature_importances_", None)
    if values is not None:
        order = np.argsort(values)[::-1][:IMPORTANCES_KEPT]
        out["importance"] = {"names": [data.feature_names[i] for i in order],
                             "values": [float(values[i]) for i in order]}
    return out


def _pretrained(path: Path) -> dict:
    from tansaku.models.attention import load_pretrained

    weights = load_pretrained(path)
    meta = weights["meta"]
    console.print(f"network starts from {path}: {meta['property']} of {meta['n']} materials, {meta['epochs']} epochs")
    return weights


def pretrain(
    property_name: str = typer.Option("e_form", "--property", help="A stored property with many values, e.g. the "
                                      "formation energies imported with 'tansaku import csv'."),
    out: Path = typer.Option(..., help="Where to write the weights (a PyTorch file)."),
    epochs: int = typer.Option(12, min=1, help="Passes over the data; 12 over 132,752 compositions take about "
                               "3 minutes on 2 cores."),
    subset: str = typer.Option(None, help="Only the materials of this subset."),
    exclude_subset: str = typer.Option(None, help="Leave out every composition this subset's materials have "
                                       "(e.g. paper), so a later test on them is not on compositions "
                                       "seen here."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Pretrain lgbm-attn's element-attention network on a large property, for 'tansaku train --pretrained'.

    A dielectric data set of 1,000 oxides is too small for a network to learn chemistry from; a property known
    for 100,000 compositions is not. The network learns to read compositions on it once, then every
    lgbm-attn training starts from these weights and refits them on its own target. Needs PyTorch.

    Example: tansaku import csv mp_e_form.csv.gz --property e_form (the matbench table), then
             tansaku pretrain --property e_form --out e_form.pt
             tansaku pretrain --property e_form --exclude-subset paper --out e_form_unseen.pt
    """
    from tansaku.models.attention import pretrain as fit_weights
    from tansaku.models.attention import save_pretrained

    db = database(create=False)
    rows, held_out = pretraining_values(db, property_name, subset, exclude_subset)
    weights = fit_weights([f for f, _ in rows], [v for _, v in rows], property_name, epochs, seed,
                          progress_bar(f"pretrain on {property_name}"))
    if exclude_subset:
        weights["meta"]["excluded"] = {"subset": exclude_subset, "values": held_out}
        console.print(f"left out {held_out} values whose composition is in subset {exclude_subset!r}")
    save_pretrained(out, weights)
    if left_out := weights["meta"]["left_out"]:
        err_console.print(f"left out {left_out} compositions the element tokens cannot hold (more than 8 elements)")
    meta = weights["meta"]
    console.print(f"pretrained on {meta['n']} values of {property_name} in {meta['seconds']:.0f} s; weights in {out}")


def predict(
    model_path: Path = typer.Option(..., "--model", help="A model saved by 'tansaku train'."),
    formula: list[str] = typer.Option(None, help="Formulas to predict (repeatable), e.g. SrTiO3."),
    structure: list[Path] = typer.Option(None, help=f"Structure files to predict (repeatable): {STRUCTURE_FILES}."),
    db_missing: bool = typer.Option(False, "--db-missing", help="Predict every stored material lacking the "
                                    "property and store the predictions as method ml:<model id>."),
    formula_table: Path = typer.Option(None, help="A CSV of formulas to predict: its composition or formula "
                                       "column, or its first column when it has no header (e.g. candidates.csv)."),
    out: Path = typer.Option(None, help="Also write the predictions to OUT.csv or OUT.json (a row per input)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Predictions with uncertainty (and, for dielectric models, the constant itself, not only its log10).

    An input that cannot be read or described (a broken file, an unknown element, a disordered cell) is skipped
    with its reason on stderr; the others are still predicted, and the exit code is 1 when any was skipped.
    A prediction outside what the model was trained on (an element or anion it never saw, no charge-balanced
    oxidation states, descriptors far from every training material) is given but flagged: "in_domain": false
    and the reasons in "domain" (JSON), "outside" in the table.

    Examples: tansaku predict --model eps.pkl --formula SrTiO3 --formula BaZrO3 --json
              tansaku predict --model eps.pkl --formula-table candidates.csv --structure cifs/ --out eps.csv
    """
    if out is not None:
        table_format(out)  # a wrong suffix is refused before anything is computed
    predictor = Predictor.load(model_path)
    formulas = [*(formula or []), *(formulas_in(formula_table) if formula_table else [])]
    items, labels, refused = read_inputs(formulas, structure or [])
    predictions = predictor.predict(items, labels)
    refused += predictions.refused
    rows = predictions.rows(predictor)
    if db_missing:
        db = database(create=False)
        with db.session() as session:
            ids = list(session.scalars(missing_property(predictor.property_name, predictor.needs_structure)))
        stored = predictor.predict_stored(db, ids, progress_bar("descriptors"))
        predictor.store(db, stored)
        rows += stored.rows(predictor)
        refused += stored.refused
    for reason in refused:
        err_console.print(f"[red]skipped[/] {reason}", soft_wrap=True)
    if out is not None:
        write_table(out, rows)
        err_console.print(f"wrote {len(rows)} prediction{'s' * (len(rows) != 1)} to {out}")
    log = predictor.transform == "log10"
    if json_out:
        console.print_json(json.dumps(rows))
    else:
        table = Table("input", "prediction" + (" (log10)" if log else ""), "± std", "value" if log else "",
                      "domain", title=predictor.id)
        for r in rows:
            table.add_row(str(r["input"]), f"{r['mean']:.3f}", f"{r['std']:.3f}", f"{r['value']:.3g}" if log else "",
                          "" if r["in_domain"] else "[yellow]outside[/]")
        console.print(table)
        for r in rows:
            if not r["in_domain"]:
                err_console.print(f"[yellow]outside the training domain[/] {r['input']}: {'; '.join(r['domain'])}",
                                  soft_wrap=True)
    finish_batch(len(rows), len(refused))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("pretrain")(pretrain)
    app.command("predict")(predict)


