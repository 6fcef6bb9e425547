"""What a campaign computes next: the known labels, the candidates left, the model trained on them, and the
choice of a round's picks (one goal, several goals at once, or two levels of theory priced per CPU hour)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.active.acquisition import STRATEGIES, in_range_probability
from tansaku.active.campaign_config import CampaignConfig
from tansaku.active.cost import CostEstimator
from tansaku.active.diversity import descriptor_coordinates, select_batch, typical_spacing
from tansaku.active.error_model import MIN_RESIDUALS, predicted_error
from tansaku.active.multigoal import Condition
from tansaku.active.ranking import Prediction, predict_for, rank
from tansaku.features.sets import base_columns, cached_features
from tansaku.models import transform as transforms
from tansaku.models.evaluation import metrics as fold_metrics
from tansaku.models.evaluation import out_of_fold
from tansaku.models.learners import make_model, model_feature_set
from tansaku.models.predictor import Predictor
from tansaku.numbers import finite_or_none
from tansaku.store.database import Database
from tansaku.store.filters import build_query, measured_values
from tansaku.store.tables import CampaignPick, Material, Property


@dataclass
class Choice:
    material_id: int
    reason: str
    mean: float | None = None
    std: float | None = None
    score: float | None = None
    cost: float | None = None
    level: str = ""  # two levels of theory: "cheap" or "expensive"


def labels(db: Database, config: CampaignConfig, campaign_id: int, prop: str | None = None) -> dict[int, float]:
    """Known values of `prop` (default: the campaign's property; property units): stored values of the training
    materials, then the campaign's own results."""
    prop = prop or config.property
    known: dict[int, float] = {}
    with db.session() as session:
        if config.training_query:
            members = build_query(config.training_query, structures_only=config.features == "structure")
            rows = session.execute(measured_values(prop).where(
                Property.material_id.in_(members.scalar_subquery())))
            for material_id, value in rows:
                known.setdefault(material_id, float(value))
        picks = session.execute(select(CampaignPick.material_id, CampaignPick.value, CampaignPick.values_by_property)
                                .where(CampaignPick.campaign_id == campaign_id))
        for material_id, value, values in picks:
            value = (values or {}).get(prop) if config.goals else value
            if value is not None:
                known[material_id] = float(value)
    return known


def candidate_ids(db: Database, config: CampaignConfig, campaign_id: int, known: dict[int, float]
                  ) -> tuple[list[int], int]:
    """Candidates never picked by this campaign and without a known value, less those the metal screen finds
    likely metals (a DFT run would only learn that it has no gap); and how many the screen left out."""
    with db.session() as session:
        query = build_query(config.candidates_query, structures_only=config.oracle == "dft"
                            or config.features == "structure")
        ids = list(session.scalars(query))
        picked = set(session.scalars(select(CampaignPick.material_id).where(
            CampaignPick.campaign_id == campaign_id)))
    ids = [i for i in ids if i not in picked and i not in known]
    if config.metal_screen is None or not ids:
        return ids, 0
    from tansaku.models.metal_screen import FLAG_PROBABILITY, MetalScreen

    names = reduced_formulas(db, ids)
    metal = MetalScreen.cached(Path(config.metal_screen)).probabilities([names[i] for i in ids])
    kept = [i for i, p in zip(ids, metal, strict=True) if not p >= FLAG_PROBABILITY]  # NaN: no descriptors, kept
    return kept, len(ids) - len(kept)


@dataclass
class Trained:
    """The round's model (as a predictor, which owns the target transform) and what it was fitted on;
    `residuals` are out of fold (None without cross-validation)."""

    predictor: Predictor
    metrics: dict
    X: np.ndarray
    y: np.ndarray
    residuals: np.ndarray | None


def train(db: Database, config: CampaignConfig, known: dict[int, float], seed: int) -> Trained:
    """Fit the campaign's model on the known values (cross-validated first when cv_folds >= 2)."""
    transform, _ = transforms.choose(config.property, np.array(list(known.values())))
    ids = [i for i, v in known.items() if transforms.usable(transform, np.array([v]))[0]]
    if len(ids) < 2:
        raise TansakuError(f"campaign {config.name!r}: {len(ids)} known value(s) of {config.property!r}; the model "
                           "needs at least 2 (check [training] query or raise init_random)")
    weights = None
    if config.pretrained:
        from tansaku.models.attention import load_pretrained

        weights = load_pretrained(Path(config.pretrained))
    model = make_model(config.learner, random_state=seed, trees=config.trees, pretrained=weights)
    descriptors = model_feature_set(model, config.features)
    X = cached_features(db, ids, descriptors)
    y = transforms.forward(transform, [known[i] for i in ids])
    metrics: dict = {"n_train": len(ids), "transform": transform}
    if weights is not None:
        metrics["pretrained_sha256"] = weights["meta"]["sha256"]
    residuals = None
    folds = config.cv_folds
    if folds >= 2 and len(ids) >= 2 * folds:
        oof, _ = out_of_fold(model, X, y, folds, seed)
        scored = fold_metrics(y, oof)
        metrics["cv_mae"], metrics["cv_r2"] = scored["mae"], scored["r2"]
        residuals = y - oof
    model.fit(X, y)
    meta = {"id": f"campaign-{config.name}", "property": config.property, "transform": transform,
            "feature_set": config.features, "descriptors": descriptors}
    return Trained(Predictor(model, meta, f"campaign {config.name!r}"), metrics, X, y, residuals)


def choose(db: Database, config: CampaignConfig, campaign_id: int, number: int, k: int,
           costs: CostEstimator | None) -> tuple[list[Choice], dict]:
    """The next k candidates and the model's metrics (empty choice when no candidate is left)."""
    rng = np.random.default_rng(config.seed * 1000 + number)
    if config.levels:
        return _choose_two_level(db, config, campaign_id, number, k, rng)
    if config.goals:
        return _choose_joint(db, config, campaign_id, number, k, costs, rng)
    known = labels(db, config, campaign_id)
    pool, screened = candidate_ids(db, config, campaign_id, known)
    if not pool:
        return [], {}
    with db.session() as session:
        n_picked = session.scalar(select(func.count()).select_from(CampaignPick).where(
            CampaignPick.campaign_id == campaign_id))
    estimate = costs.estimate(pool) if costs else np.full(len(pool), np.nan)
    if n_picked < config.init_random:
        take = rng.choice(len(pool), size=min(k, config.init_random - n_picked, len(pool)), replace=False)
        return [Choice(pool[i], "initial random", cost=finite_or_none(estimate[i])) for i in take], {}
    started = time.perf_counter()
    trained = train(db, config, known, config.seed + number)
    predictor, metrics, y = trained.predictor, trained.metrics, trained.y
    if config.metal_screen:
        metrics["screened_metals"] = screened
    X, kept, refused = predictor.describe_stored(db, pool)
    if refused:
        metrics["refused"] = refused[:20]
    usable = np.isfinite(X).any(axis=1) if len(X) else np.zeros(0, dtype=bool)
    estimate = estimate[[pool.index(i) for i in kept]] if kept else estimate[:0]
    pool = kept
    if config.cost_aware:
        if costs is None:
            raise TansakuError("cost_aware needs cost estimates: give [dft] preset and pseudo_dir")
        # without an estimate the workflow cannot run the candidate (no structure or pseudopotential)
        metrics["no_cost_estimate"] = int((~np.isfinite(estimate)).sum())
        usable &= np.isfinite(estimate)
    pool, X, estimate = [p for p, ok in zip(pool, usable, strict=True) if ok], X[usable], estimate[usable]
    if not pool:
        return [], metrics
    goal = predictor.goal(config.goal)
    chosen_strategy = STRATEGIES[config.strategy]
    prediction = predict_for(chosen_strategy, goal, predictor, X)
    best = float(goal.desirability(y).max()) if goal.kind != "error" else None
    label = f"{config.strategy} score"
    if chosen_strategy.batch == "error-model":
        weights, label = _error_weights(trained, X, prediction.std, config, number)
        prediction = Prediction(weights, weights)
    if goal.kind == "range":
        metrics["expected_hits_left"] = float(in_range_probability(prediction.mean, prediction.std, goal.lo,
                                                                   goal.hi).sum())
    coords = None
    if config.diversity > 0 and k > 1 and len(pool) > 2 and not chosen_strategy.is_draw:
        coords = descriptor_coordinates(base_columns(X, config.features))
    ranked = rank(chosen_strategy, goal, prediction, k, rng, best=best,
                  cost=estimate if config.cost_aware else None, coords=coords, diversity=config.diversity)
    shown = prediction.std if chosen_strategy.batch == "error-model" else ranked.scores
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    return [Choice(pool[i], f"{label} {shown[i]:.4g}", float(prediction.mean[i]), float(prediction.std[i]),
                   float(ranked.scores[i]), finite_or_none(estimate[i])) for i in ranked.chosen], metrics


def _choose_joint(db: Database, config: CampaignConfig, campaign_id: int, number: int, k: int,
                  costs: CostEstimator | None, rng: np.random.Generator) -> tuple[list[Choice], dict]:
    """Several goals: one model per goal property, each trained on that property's known values; candidates
    ranked by the probability of meeting every goal (errors independent; a value already known counts as
    certain), a spread batch as for one goal."""
    known = {prop: labels(db, config, campaign_id, prop) for prop in config.properties}
    everything_known = set.intersection(*(set(v) for v in known.values()))
    pool, screened = candidate_ids(db, config, campaign_id, {})
    pool = [i for i in pool if i not in everything_known]
    if not pool:
        return [], {}
    estimate = costs.estimate(pool) if costs else np.full(len(pool), np.nan)
    with db.session() as session:
        n_picked = session.scalar(select(func.count()).select_from(CampaignPick).where(
            CampaignPick.campaign_id == campaign_id))
    if n_picked < config.init_random:
        take = rng.choice(len(pool), size=min(k, config.init_random - n_picked, len(pool)), replace=False)
        return [Choice(pool[i], "initial random", cost=finite_or_none(estimate[i])) for i in take], {}
    started = time.perf_counter()
    metrics: dict = {"joint_errors": "independent", "goals": [str(c) for c in config.goals]}
    if config.metal_screen:
        metrics["screened_metals"] = screened
    joint, X = _goal_probabilities(db, config, config.goals, known, pool, number, metrics)
    metrics["expected_hits_left"] = float(joint.sum())
    chosen = _spread_batch(joint, k, rng, X, config)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    return [Choice(pool[i], f"joint probability {joint[i]:.3g}", score=float(joint[i]),
                   cost=finite_or_none(estimate[i])) for i in chosen], metrics


def _spread_batch(scores: np.ndarray, k: int, rng: np.random.Generator, X: np.ndarray, config: CampaignConfig,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """The k best scores, spread over descriptor space by local penalization when config.diversity > 0 (`rows`:
    which rows of X the scores belong to; the spacing is measured over all of X)."""
    if config.diversity <= 0 or k <= 1 or len(scores) <= 2:
        return select_batch(scores, k, rng)
    coords = descriptor_coordinates(base_columns(X, config.features))
    spacing = typical_spacing(coords, np.random.default_rng(0))
    return select_batch(scores, k, rng, coords if rows is None else coords[rows], config.diversity * spacing)


def _goal_probabilities(db: Database, config: CampaignConfig, goals: list[Condition], known: dict, pool: list[int],
                        number: int, metrics: dict) -> tuple[np.ndarray, np.ndarray]:
    """P(every goal in `goals`) for each pool member, one model per goal property (errors independent; a known
    value counts as certain), and the pool's descriptors; each model's metrics go into `metrics`."""
    joint, X = np.ones(len(pool)), np.zeros((len(pool), 0))
    for condition in goals:
        prop_config = replace(config, property=condition.prop, goals=[], levels=None)
        trained = train(db, prop_config, known[condition.prop], config.seed + number)
        X, kept, refused = trained.predictor.describe_stored(db, pool)
        if kept != pool:
            raise TansakuError(f"campaign {config.name!r}: the {condition.prop} model cannot describe candidates "
                               f"{', '.join(refused[:5])}")
        mean, std = trained.predictor.predict_dist(X)
        measured = np.array([known[condition.prop].get(i, np.nan) for i in pool], float)
        joint *= np.where(np.isfinite(measured), condition.met(measured).astype(float),
                          condition.probability(mean, std, trained.predictor.transform))
        metrics[condition.prop] = trained.metrics
    return joint, X


def _picks_by_level(db: Database, campaign_id: int) -> dict[tuple[int, str], tuple[str, float | None]]:
    """(material, level) → (status, CPU hours) of every pick so far."""
    with db.session() as session:
        return {(m, level): (status, hours) for m, level, status, hours in session.execute(
            select(CampaignPick.material_id, CampaignPick.level, CampaignPick.status, CampaignPick.cpu_hours)
            .where(CampaignPick.campaign_id == campaign_id))}


def level_prices(config: CampaignConfig, picks: dict) -> dict[str, float]:
    """CPU hours per pick at each level: the median measured on this campaign's finished picks, else the
    [levels] guess."""
    prices = {}
    for level in ("cheap", "expensive"):
        measured = [h for (_, lv), (status, h) in picks.items() if lv == level and status == "done" and h]
        guess = config.levels[f"{level}_cpu_hours"]
        if not measured and guess is None:
            raise TansakuError(f"campaign {config.name!r}: no {level}-level pick has finished and [levels] "
                               f"{level}_cpu_hours is not set: give a first guess, or init_random >= 2")
        prices[level] = float(np.median(measured)) if measured else float(guess)
    return prices


def _choose_two_level(db: Database, config: CampaignConfig, campaign_id: int, number: int, k: int,
                      rng: np.random.Generator) -> tuple[list[Choice], dict]:
    """Two levels of theory: each option is screening a candidate at the cheap level or promoting a screened
    one to the expensive level, ranked by expected hits per CPU hour (`multifidelity.two_level_options`: the
    expensive model reads the cheap value as a descriptor; other goals, revealed by the screening, multiply in
    as their probability, or as certain once known). The first `init_random` candidates get both levels."""
    from tansaku.active.multifidelity import TwoLevelSetup, TwoLevelState, two_level_options

    levels = config.levels
    expensive_goal = next(c for c in config.goals if c.prop == levels["property"])
    others = [c for c in config.goals if c.prop != levels["property"]]
    known = {prop: labels(db, config, campaign_id, prop) for prop in config.properties + [levels["cheap"]]}
    picks = _picks_by_level(db, campaign_id)
    failed = {m for (m, _), (status, _) in picks.items() if status not in ("done", "pending")}
    candidates, screened = candidate_ids(db, config, campaign_id, {})
    candidates = [m for m in candidates if m not in failed]
    picked = {m for m, _ in picks}
    screened_picks = {m for (m, level) in picks if level == "cheap"}
    if len(picked) < config.init_random:
        fresh = [m for m in candidates if m not in picked]
        take = rng.choice(len(fresh), size=min(max(1, k // 2), config.init_random - len(picked), len(fresh)),
                          replace=False) if fresh else []
        return [Choice(fresh[i], "initial random: both levels", level=level) for i in take
                for level in ("cheap", "expensive")], {}
    # candidate_ids leaves out every picked material; those screened (not yet promoted) come back as options
    options = [m for m in candidates] + [m for m in screened_picks if (m, "expensive") not in picks
                                         and m not in failed and m in known[levels["cheap"]]]
    if not options:
        return [], {}
    started = time.perf_counter()
    prices = level_prices(config, picks)
    teach = sorted(set(known[levels["cheap"]]) | set(known[levels["property"]]))
    rows = list(dict.fromkeys(options + teach))
    metrics: dict = {"joint_errors": "independent", "goals": [str(c) for c in config.goals],
                     "levels": {"cheap": levels["cheap"], "expensive": levels["property"]},
                     "cpu_hours_per_pick": prices}
    if config.metal_screen:
        metrics["screened_metals"] = screened
    other, X = _goal_probabilities(db, config, others, known, rows, number, metrics)
    if not others:
        model = make_model(config.learner, random_state=config.seed + number, trees=config.trees)
        X = cached_features(db, rows, model_feature_set(model, config.features))
    cheap = np.array([known[levels["cheap"]].get(m, np.nan) for m in rows], float)
    expensive = np.array([known[levels["property"]].get(m, np.nan) for m in rows], float)
    state = TwoLevelState(np.isfinite(cheap), np.isfinite(expensive), 0.0)
    if (state.screened & state.verified).sum() < 2:
        raise TansakuError(f"campaign {config.name!r}: the {levels['property']} model needs at least 2 materials "
                           f"with both {levels['cheap']} and {levels['property']} known (raise init_random or "
                           "give a [training] query that has both)")
    setup = TwoLevelSetup(X, cheap, expensive, expensive_goal, prices["cheap"], prices["expensive"],
                          model=config.learner, trees=config.trees)
    eligible = np.isin(rows, options)
    index, level_of, rate = two_level_options(setup, state, config.seed + number, False, eligible, other)
    worth = rate > 0
    index, level_of, rate = index[worth], level_of[worth], rate[worth]
    metrics["expected_hits_per_cpu_hour_best"] = float(rate.max()) if len(rate) else 0.0
    metrics["options"] = {"screen": int((level_of == 0).sum()), "promote": int((level_of == 1).sum())}
    if not len(index):
        return [], metrics
    chosen = _spread_batch(rate, k, rng, X, config, index)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    choices = []
    for i in chosen:
        row, level = int(index[i]), "expensive" if level_of[i] == 1 else "cheap"
        if level == "expensive":
            why = (f"promote: {rate[i] * prices['expensive']:.3g} P(goals | {levels['cheap']} {cheap[row]:.3g}), "
                   f"{rate[i]:.3g} hits/CPU-h")
        else:
            why = f"screen: {rate[i]:.3g} hits/CPU-h expected (P(other goals) {other[row]:.3g})"
        choices.append(Choice(rows[row], why, score=float(rate[i]), cost=prices[level], level=level))
    return choices, metrics


def _error_weights(trained: Trained, X: np.ndarray, std: np.ndarray, config: CampaignConfig,
                   number: int) -> tuple[np.ndarray, str]:
    """error-model's draw weights: the error predicted from the out-of-fold residuals, or the tree spread while
    there are too few residuals to model. The error model reads the user's descriptors only: a model's extra
    blocks (hundreds of sparse ion fractions) would dilute its column sampling, as they would the trees'."""
    residuals = trained.residuals
    if residuals is None or np.isfinite(residuals).sum() < MIN_RESIDUALS:
        return std, "error-model (too few labels to model the error): spread"
    error = predicted_error(base_columns(trained.X, config.features), residuals, base_columns(X, config.features),
                            seed=config.seed + number)
    return error, "error-model: predicted error"


def reduced_formulas(db: Database, ids: list[int]) -> dict[int, str]:
    with db.session() as session:
        return dict(session.execute(select(Material.id, Material.reduced_formula).where(Material.id.in_(ids))).all())
