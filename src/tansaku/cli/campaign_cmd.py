"""`tansaku campaign run|status|example`: the closed loop, unattended and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tansaku.cli.common import console, database

app = typer.Typer(help="Closed-loop campaigns: train → suggest → compute with DFT → store → retrain, repeated.")


def make_oracle(db, config, say):
    """The oracle the config asks for, and a cost estimator when DFT settings and pseudopotentials are known."""
    from tansaku.active.cost import CostEstimator
    from tansaku.active.oracles import DatasetOracle, DFTOracle

    levels = config.level_properties()
    gap_only = config.properties == ["band_gap"]  # the oracle runs relaxation and SCF only
    if config.oracle == "dataset":
        costs = CostEstimator(db, config.dft.context(db), gap_only) if config.dft.pseudo_dir else None
        prices = {level: config.levels[f"{level}_cpu_hours"] for level in ("cheap", "expensive")} \
            if config.levels else None
        return DatasetOracle(db, config.property, config.oracle_method, config.properties, levels, prices), costs
    ctx = config.dft.context(db)
    oracle = DFTOracle(ctx, config.property, config.dft.workers,
                       on_step=lambda key, step: say(f"  material {key}: {step}"), properties=config.properties,
                       levels=levels)
    return oracle, CostEstimator(db, ctx, gap_only)


@app.command("run")
def run_cmd(
    config_file: Path = typer.Argument(..., help="Campaign TOML (see `tansaku campaign example`)."),
    rounds: int = typer.Option(None, help="Stop after this many new rounds (the campaign stays open)."),
) -> None:
    """Run a campaign until its budget is spent or its goal is met; rerunning continues it.

    Each round trains the model on everything known, picks a batch of candidates with the acquisition
    function, runs the DFT workflows on them (or asks the dataset oracle in a simulation), and stores
    the outcomes. With two levels of theory ([[goal]] cheap = ...) each pick is a screening at the cheap
    level (PBEsol) or a promotion to the expensive one (a hybrid gap), whichever promises more hits per
    CPU hour. State lives in the database, so after an interruption (even SIGKILL) the same command
    finishes the interrupted round without repeating finished calculations, then goes on. Failed or metallic
    candidates are recorded and never chosen again.
    """
    from tansaku.active.campaign import run_campaign
    from tansaku.active.campaign_config import load_config

    config = load_config(config_file)
    db = database()
    oracle, costs = make_oracle(db, config, console.print)
    status = run_campaign(db, config, oracle, costs=costs, say=console.print, max_rounds=rounds)
    print_status(status)


@app.command("status")
def status_cmd(
    name: str = typer.Argument(..., help="Campaign name, or its TOML file."),
    plot: Path = typer.Option(None, help="Write a PNG: materials found against runs, the model's cross-validated "
                              "error by round, and each pick's prediction against its outcome."),
    json_out: Path = typer.Option(None, "--json", help="Write rounds, picks and outcomes as JSON."),
) -> None:
    """Rounds, chosen candidates with their predictions and outcomes, hits and spent budget."""
    from tansaku.active.campaign import campaign_status

    if name.endswith(".toml") and Path(name).is_file():
        from tansaku.active.campaign_config import load_config

        name = load_config(Path(name)).name
    status = campaign_status(database(create=False), name)
    print_status(status)
    if plot:
        from tansaku.plots.figures import campaign_progress

        campaign_progress(status, plot)
        console.print(f"plot written to {plot}")
    if json_out:
        json_out.write_text(json.dumps(status, indent=1, default=str))


@app.command("example")
def example_cmd(
    goals: bool = typer.Option(False, "--goals", help="The example with several goals ([[goal]] tables: a "
                               "candidate counts when it meets every one), e.g. the high-k screen."),
    two_levels: bool = typer.Option(False, "--two-levels", help="The example with two goals and two levels of "
                                    "theory: PBEsol gaps screen, HSE06 gaps confirm (a green emitter)."),
) -> None:
    """Print a commented campaign TOML to start from."""
    from tansaku.active.campaign_config import EXAMPLE, EXAMPLE_GOALS, EXAMPLE_TWO_LEVELS

    print(EXAMPLE_TWO_LEVELS if two_levels else EXAMPLE_GOALS if goals else EXAMPLE, end="")


def print_status(status: dict) -> None:
    def fmt(x, spec=".3g"):
        return "" if x is None else format(x, spec)

    goal = ", ".join(status["goals"]) if status.get("goals") else f"{status['property']}, goal {status['goal']['kind']}"
    if status.get("levels"):
        goal += f"; levels: {status['levels']['cheap']} → {status['levels']['property']}"
    table = Table("round", "formula (id)", "why", "predicted (±1σ)", "est. CPU-h", "outcome", "value",
                  title=f"campaign {status['name']} ({goal})")
    for r in status["rounds"]:
        for i, p in enumerate(r["picks"]):
            outcome = p["status"] + (" ★" if p["hit"] else "")
            pred = "" if p["predicted"] is None else \
                f"{p['predicted']:.3g} ({p['predicted_low']:.3g} to {p['predicted_high']:.3g})"
            name = f"{p['formula']} ({p['material_id']})" + (f" {p['level']}" if p.get("level") else "")
            table.add_row(str(r["number"]) if i == 0 else "", name, p["reason"],
                          pred, fmt(p["cost_estimate"]), outcome,
                          ", ".join(f"{k} {v:.3g}" for k, v in p["values"].items()) if status.get("goals")
                          and p.get("values") else fmt(p["value"]))
    console.print(table)
    budget = status["budget"]
    maes = [r["model"]["cv_mae"] for r in status["rounds"] if "cv_mae" in r["model"]]
    if maes:
        console.print(f"model CV MAE (model units): first round {maes[0]:.4g}, last round {maes[-1]:.4g}")
    screened = [r["model"]["screened_metals"] for r in status["rounds"] if "screened_metals" in r["model"]]
    if screened:
        console.print(f"metal screen: {screened[-1]} candidate(s) left out as likely metals in the last round")
    console.print(f"{status['runs']} of {budget['runs']} runs, {status['cpu_hours']:.3f} CPU hours"
                  + (f" of {budget['cpu_hours']}" if budget["cpu_hours"] else "")
                  + f"; {status['hits']} found; outcomes: "
                  + ", ".join(f"{n} {kind}" for kind, n in status["outcomes"].items() if n)
                  + f"; status {status['status']}"
                  + (f" ({status['stop_reason']})" if status["stop_reason"] else ""))
    for level, used in (status.get("by_level") or {}).items():
        console.print(f"  {level} level: {used['runs']} runs, {used['cpu_hours']:.3f} CPU hours")
