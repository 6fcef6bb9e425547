"""Closed-loop campaigns: train → suggest → compute → store → retrain, until the budget is spent or the goal met.

All state lives in the database (campaigns, campaign_rounds, campaign_picks), written so that a campaign killed
at any moment continues where it stopped:
- a round and its picks are inserted in one transaction, before anything is computed;
- each pick's outcome is written as soon as it is known; the round is marked done when all picks have one;
- a rerun first finishes an unfinished round (the DFT workflow itself skips finished steps), then goes on.
A material is picked at most once per campaign (a unique constraint), so failed or metallic candidates are never
chosen again and no calculation is repeated. What a round picks is decided in `campaign_choice`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.active.acquisition import Goal
from tansaku.active.campaign_choice import Choice, choose, labels, reduced_formulas, train
from tansaku.active.campaign_config import CampaignConfig
from tansaku.active.cost import CostEstimator
from tansaku.active.multigoal import Condition
from tansaku.active.oracles import Oracle, Outcome
from tansaku.models import transform as transforms
from tansaku.store.database import Database
from tansaku.store.tables import Campaign, CampaignPick, CampaignRound, Material, utcnow
from tansaku.workflows.job import Job

Say = Callable[[str], None]


def open_campaign(db: Database, config: CampaignConfig) -> int:
    """The campaign's id: created on first run; a rerun must keep property, goal, oracle and candidates."""
    with db.session() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == config.name))
        if campaign is None:
            campaign = Campaign(name=config.name, config=config.as_dict(), status="running")
            session.add(campaign)
            session.flush()
            return campaign.id
        stored = {k: campaign.config.get(k) for k in config.identity()}
        if stored.get("levels"):  # the prices may change, the levels may not
            stored["levels"] = {k: stored["levels"][k] for k in ("property", "cheap")}
        if stored != config.identity():
            changed = [k for k in stored if stored[k] != config.identity()[k]]
            raise TansakuError(f"campaign {config.name!r} exists with a different {', '.join(changed)}; "
                               "give the new search another name")
        return campaign.id


def _start(db: Database, campaign_id: int, config: CampaignConfig) -> None:
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        campaign.config = config.as_dict()  # budget, batch and DFT settings may change between runs
        campaign.status, campaign.stop_reason = "running", None


def is_hit(config: CampaignConfig, value: float | None, values: dict | None = None) -> bool:
    if config.goals:  # several goals: every one met
        values = values or {}
        return all(bool(c.met(np.array([values.get(c.prop, np.nan)], float))[0]) for c in config.goals)
    if value is None:
        return False
    goal = config.goal
    if goal.kind == "range":
        return goal.lo <= value <= goal.hi
    if config.stop_value is not None and goal.kind == "maximize":
        return value >= config.stop_value
    if config.stop_value is not None and goal.kind == "minimize":
        return value <= config.stop_value
    return False


def spent(db: Database, campaign_id: int, config: CampaignConfig) -> dict:
    with db.session() as session:
        picks = session.execute(select(CampaignPick.status, CampaignPick.value, CampaignPick.cpu_hours,
                                       CampaignPick.values_by_property).where(
            CampaignPick.campaign_id == campaign_id)).all()
        rounds = session.scalar(select(func.count()).select_from(CampaignRound).where(
            CampaignRound.campaign_id == campaign_id))
        last_model = session.scalar(select(CampaignRound.model).where(CampaignRound.campaign_id == campaign_id)
                                    .order_by(CampaignRound.number.desc()).limit(1))
    return {"runs": len(picks), "cpu_hours": float(sum(h or 0.0 for _, _, h, _ in picks)),
            "hits": sum(is_hit(config, v, vs) for s, v, _, vs in picks if s in ("done", "metal")),
            "rounds": rounds, "last_model": last_model or {}}


def stop_reason(config: CampaignConfig, used: dict) -> str | None:
    if used["runs"] >= config.budget_runs:
        return f"budget spent: {used['runs']} of {config.budget_runs} runs"
    if config.budget_cpu_hours is not None and used["cpu_hours"] >= config.budget_cpu_hours:
        return f"budget spent: {used['cpu_hours']:.2f} of {config.budget_cpu_hours} CPU hours"
    if config.stop_hits is not None and used["hits"] >= config.stop_hits:
        return f"goal met: {used['hits']} materials found"
    if config.goal.kind in ("maximize", "minimize") and config.stop_value is not None and used["hits"]:
        return f"goal met: a value beyond {config.stop_value} was found"
    cv_mae = used["last_model"].get("cv_mae")
    if config.goal.kind == "error" and config.stop_value is not None and cv_mae is not None \
            and cv_mae <= config.stop_value:
        return f"goal met: cross-validated MAE {cv_mae:.4g} ≤ {config.stop_value}"
    return None


def _open_round(db: Database, campaign_id: int) -> int | None:
    with db.session() as session:
        return session.scalar(select(CampaignRound.id).where(CampaignRound.campaign_id == campaign_id,
                                                             CampaignRound.status == "computing"))


def _record_round(db: Database, campaign_id: int, choices: list[Choice], metrics: dict) -> int:
    """The round and its picks in one transaction: either the whole choice is stored or none of it."""
    with db.session() as session:
        number = (session.scalar(select(func.max(CampaignRound.number)).where(
            CampaignRound.campaign_id == campaign_id)) or 0) + 1
        round_ = CampaignRound(campaign_id=campaign_id, number=number, status="computing", model=metrics)
        session.add(round_)
        session.flush()
        session.add_all(CampaignPick(campaign_id=campaign_id, round_id=round_.id, material_id=c.material_id,
                                     reason=c.reason, mean=c.mean, std=c.std, score=c.score, cost_estimate=c.cost,
                                     level=c.level) for c in choices)
        return round_.id


def compute_round(db: Database, round_id: int, oracle: Oracle, say: Say) -> None:
    """Get an outcome for every pending pick of the round, each written as it arrives (the cheap level before
    the expensive one, which reuses its steps); then close the round."""
    with db.session() as session:
        pending = session.execute(select(CampaignPick.material_id, CampaignPick.level).where(
            CampaignPick.round_id == round_id, CampaignPick.status == "pending")).all()

    def store(level: str, material_id: int, outcome: Outcome) -> None:
        with db.session() as session:
            pick = session.scalar(select(CampaignPick).where(CampaignPick.round_id == round_id,
                                                             CampaignPick.material_id == material_id,
                                                             CampaignPick.level == level))
            pick.status, pick.value, pick.cpu_hours = outcome.status, outcome.value, outcome.cpu_hours
            pick.values_by_property = outcome.values or None
            pick.detail = outcome.detail[:2000] or None
            formula = session.get(Material, material_id).reduced_formula
        value = "" if outcome.value is None else f" value {outcome.value:.4g}"
        if len(outcome.values) > 1:
            value = " " + ", ".join(f"{p} {v:.4g}" for p, v in outcome.values.items())
        say(f"material {material_id} ({formula}){f' [{level}]' if level else ''}: {outcome.status}{value}"
            + (f" ({outcome.detail[:120]})" if outcome.detail and outcome.status != "done" else ""))

    for level in ("", "cheap", "expensive"):
        ids = [m for m, lv in pending if lv == level]
        if ids and level:
            oracle.evaluate(ids, lambda m, outcome, level=level: store(level, m, outcome), level=level)
        elif ids:  # one level: oracles written before levels existed take no `level`
            oracle.evaluate(ids, lambda m, outcome: store("", m, outcome))
    with db.session() as session:
        left = session.scalar(select(func.count()).select_from(CampaignPick).where(
            CampaignPick.round_id == round_id, CampaignPick.status == "pending"))
        if left:
            raise TansakuError(f"{left} pick(s) of round {round_id} got no outcome; rerun the campaign to retry")
        round_ = session.get(CampaignRound, round_id)
        round_.status, round_.finished_at = "done", utcnow()


def run_campaign(db: Database, config: CampaignConfig, oracle: Oracle, *, costs: CostEstimator | None = None,
                 say: Say = print, max_rounds: int | None = None) -> dict:
    """Run (or continue) the campaign until it stops; returns the status summary."""
    from tansaku.active.campaign_lock import CampaignLock

    campaign_id = open_campaign(db, config)
    with CampaignLock(db, campaign_id):
        _start(db, campaign_id, config)
        return _loop(db, config, oracle, campaign_id, costs, say, max_rounds)


def _loop(db: Database, config: CampaignConfig, oracle: Oracle, campaign_id: int, costs: CostEstimator | None,
          say: Say, max_rounds: int | None) -> dict:
    rounds_here = 0
    while True:
        open_round = _open_round(db, campaign_id)
        if open_round is not None:
            say(f"continuing round {open_round}")
            compute_round(db, open_round, oracle, say)
            continue
        used = spent(db, campaign_id, config)
        reason = stop_reason(config, used)
        if reason is None and max_rounds is not None and rounds_here >= max_rounds:
            return campaign_status(db, config.name)  # paused, not finished
        if reason is None:
            k = min(config.batch, config.budget_runs - used["runs"])
            choices, metrics = choose(db, config, campaign_id, used["rounds"] + 1, k, costs)
            if not choices:
                reason = "no candidates left"
            else:
                round_id = _record_round(db, campaign_id, choices, metrics)
                rounds_here += 1
                names = reduced_formulas(db, [c.material_id for c in choices])
                say(f"round {used['rounds'] + 1}: chose " + ", ".join(
                    f"{names[c.material_id]}{f' [{c.level}]' if c.level else ''} ({c.reason}"
                    + (f", ~{c.cost:.3g} CPU-h)" if c.cost else ")") for c in choices))
                compute_round(db, round_id, oracle, say)
                continue
        _finish(db, config, campaign_id, reason)
        say(f"campaign {config.name!r} stopped: {reason}")
        return campaign_status(db, config.name)


def _finish(db: Database, config: CampaignConfig, campaign_id: int, reason: str) -> None:
    """Retrain once more on everything learned (the loop's last 'retrain') and close the campaign."""
    final: dict = {}
    for prop in config.properties:
        known = labels(db, config, campaign_id, prop)
        if len(known) >= 2:
            metrics = train(db, replace(config, property=prop, goals=[]), known, config.seed).metrics
            final = metrics if not config.goals else {**final, prop: metrics}
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        campaign.status, campaign.stop_reason, campaign.finished_at = "finished", reason, utcnow()
        campaign.final_model = final


def campaign_status(db: Database, name: str) -> dict:
    """Rounds, picks with outcomes, hits and spent budget, as plain data (for tables, JSON and plots)."""
    with db.session() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == name))
        if campaign is None:
            known = ", ".join(session.scalars(select(Campaign.name))) or "none"
            raise TansakuError(f"no campaign named {name!r} (campaigns: {known})")
        stored = dict(campaign.config)
        config = _config_back(stored)
        rounds = []
        for round_ in session.scalars(select(CampaignRound).where(CampaignRound.campaign_id == campaign.id)
                                      .order_by(CampaignRound.number)):
            picks = session.execute(select(CampaignPick, Material.reduced_formula)
                                    .join(Material, Material.id == CampaignPick.material_id)
                                    .where(CampaignPick.round_id == round_.id).order_by(CampaignPick.id)).all()
            # picks keep mean and std in the round model's units; rounds before the transform was recorded
            # learned dielectric constants as log10 and everything else as it is
            transform = (round_.model or {}).get("transform") or transforms.choose(config.property, [])[0]
            rounds.append({"number": round_.number, "status": round_.status, "model": round_.model or {},
                           "picks": [{"material_id": p.material_id, "formula": f, "level": p.level,
                                      "reason": p.reason,
                                      "mean": p.mean, "std": p.std, **_predicted(transform, p.mean, p.std),
                                      "cost_estimate": p.cost_estimate,
                                      "status": p.status, "value": p.value, "values": p.values_by_property,
                                      "cpu_hours": p.cpu_hours,
                                      "hit": is_hit(config, p.value, p.values_by_property)
                                      if p.status in ("done", "metal") else False,
                                      "detail": p.detail} for p, f in picks]})
        summary = {"name": campaign.name, "status": campaign.status, "stop_reason": campaign.stop_reason,
                   "property": config.property, "oracle": config.oracle, "goal": stored["goal"],
                   "goals": [str(c) for c in config.goals], "levels": config.levels,
                   "final_model": campaign.final_model,
                   "budget": {"runs": config.budget_runs, "cpu_hours": config.budget_cpu_hours}}
    picks = [p for r in rounds for p in r["picks"]]
    summary.update(rounds=rounds, runs=len(picks), hits=sum(p["hit"] for p in picks),
                   cpu_hours=sum(p["cpu_hours"] or 0.0 for p in picks),
                   outcomes={s: sum(p["status"] == s for p in picks) for s in ("done", "metal", "failed", "pending")})
    if config.levels:
        summary["by_level"] = {level: {"runs": sum(p["level"] == level for p in picks),
                                       "cpu_hours": sum(p["cpu_hours"] or 0.0 for p in picks if p["level"] == level)}
                               for level in ("cheap", "expensive")}
    return summary


def _predicted(transform: str, mean: float | None, std: float | None) -> dict:
    """A pick's prediction in the property's units (None for picks made before any model, at random)."""
    if mean is None or std is None:
        return {"predicted": None, "predicted_low": None, "predicted_high": None}
    value, low, high = transforms.inverse(transform, mean, std)
    return {"predicted": float(value), "predicted_low": float(low), "predicted_high": float(high)}


def _config_back(stored: dict) -> CampaignConfig:
    """The CampaignConfig from its stored dict (as_dict flattened the TOML sections)."""
    goal = stored["goal"]
    return CampaignConfig(**{**stored, "goal": Goal(goal["kind"], goal["lo"], goal["hi"]),
                             "goals": [Condition.parse(text) for text in stored.get("goals") or []],
                             "dft": Job.from_table(stored.get("dft") or {}, "stored campaign [dft]")})
