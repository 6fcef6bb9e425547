"""`tansaku al simulate` and `tansaku al suggest`: choose the next calculations, and measure the choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from tansaku import TansakuError
from tansaku.active.acquisition import STRATEGIES, Goal
from tansaku.cli.common import STRUCTURE_FILES, console, database, err_console, finish_batch, finite, progress_bar
from tansaku.files import table_format, write_table

app = typer.Typer(help="Active learning: simulate strategies on labelled data, suggest what to compute next.",
                  no_args_is_help=True)

STRATEGY_HELP = "; ".join(f"{name}: {s.description}" for name, s in STRATEGIES.items())


def goal_from_options(window: tuple[float, float] | None, maximize: bool, minimize: bool) -> Goal:
    chosen = [window is not None, maximize, minimize]
    if sum(chosen) > 1:
        raise TansakuError("give only one of --range, --maximize and --minimize")
    if window is not None:
        return Goal("range", float(window[0]), float(window[1]))
    if maximize:
        return Goal("maximize")
    if minimize:
        return Goal("minimize")
    return Goal("error")


@app.command()
def simulate(
    property_name: str = typer.Option(None, "--property", help="The property to learn (a stored property, or the "
                                      "name given to the CSV's value column); not needed with --goal."),
    goal_texts: list[str] = typer.Option(None, "--goal", help="A condition on a stored property, repeatable: "
                                         "'band_gap>=3', 'eps_total<=50', 'band_gap=2.2:2.6'. With several, "
                                         "the targets meet all of them and the strategies are joint (the "
                                         "probability of meeting all), random, ei-desirability and "
                                         "single:<property>; the database's values, one surrogate per property."),
    from_db: bool = typer.Option(False, "--db", help="Take labels from the database (the default without --csv)."),
    csv: Path = typer.Option(None, "--csv", help="A CSV of formula,value rows (gzip allowed): composition "
                             "descriptors, cached on disk after the first run."),
    column: str = typer.Option(None, help="CSV value column (default: the first non-formula column)."),
    features: str = typer.Option("composition", help="Database descriptors: composition or structure."),
    subset: str = typer.Option(None, help="Database subset to simulate on, e.g. 'paper'."),
    strategy: list[str] = typer.Option(None, help=f"Repeatable; compared on the same seeds and splits (default: "
                                       f"random and uncertainty; joint and random with --goal). {STRATEGY_HELP}."),
    window: tuple[float, float] = typer.Option(None, "--range", callback=finite,
                                               help="Goal: values inside LO HI (e.g. --range 2 3)."),
    maximize: bool = typer.Option(False, help="Goal: the largest values (targets: the top --top-fraction)."),
    minimize: bool = typer.Option(False, help="Goal: the smallest values."),
    init: int = typer.Option(50, help="Randomly chosen labelled materials to start from."),
    batch: int = typer.Option(5, help="Materials added per round."),
    budget: int = typer.Option(None, help="Labelled materials at the end, the initial ones included (default 300); "
                               "with --cheap-csv the cost to stop at (default: stop once half the targets are "
                               "found)."),
    seeds: int = typer.Option(5, help="Repetitions with different splits and starts."),
    test_fraction: float = typer.Option(0.2, callback=finite, help="Held out for the learning curve; 0 measures the "
                                        "error on the not-yet-labelled pool instead."),
    model: str = typer.Option("et", help="Surrogate: rf, et, lgbm or blend."),
    trees: int = typer.Option(100, help="Trees per forest (refitted every round, so fewer than for training)."),
    calibrate: bool = typer.Option(False, help="Rescale the uncertainty by 3-fold CV on the labelled set."),
    diversity: float = typer.Option(1.0, callback=finite, help="Batch spread: penalty length in units of the pool's "
                                    "typical nearest-neighbour distance; 0 takes the plain top-k. Random draws "
                                    "(random, weighted, error-model) are never penalized."),
    strata: int = typer.Option(1000, help="Regions of descriptor space for the 'stratified' strategy."),
    top_fraction: float = typer.Option(0.05, callback=finite,
                                       help="--maximize/--minimize: the top fraction that counts as found."),
    init_containing: str = typer.Option(None, help="Start only from materials containing this element "
                                        "(e.g. O: a database biased to oxides)."),
    test_without: str = typer.Option(None, help="Test only on materials without this element (the 'unknown')."),
    cheap_csv: Path = typer.Option(None, "--cheap-csv", help="Two levels of theory: a CSV of the same property at a "
                                   "cheap level (e.g. PBE gaps) for --csv's expensive one (e.g. experimental gaps); "
                                   "joined by formula, polymorphs by their median. Needs one --goal and "
                                   "--expensive-cost."),
    cheap_cost: float = typer.Option(1.0, callback=finite, help="Two levels: the price of one cheap value."),
    expensive_cost: float = typer.Option(None, callback=finite, help="Two levels: the price of one expensive value, in "
                                         "the cheap value's units (e.g. 10)."),
    json_out: Path = typer.Option(None, "--json", help="Write curves: n_pool, n_targets, strategies -> seeds -> "
                                  "evaluated, found, mae, r2, coverage_68 per round."),
    plot: Path = typer.Option(None, help="PNG of learning and discovery curves (median and spread over seeds)."),
) -> None:
    """Replay active learning on data whose labels are known, to see which strategy needs fewer calculations.

    Every strategy starts from the same random labelled set and is tested on the same held-out set per seed.
    Each round the surrogate is refitted, the strategy picks --batch materials, their labels are revealed.

    Examples:
      tansaku al simulate --property band_gap --db --subset paper --features structure --range 2 3
        --strategy random --strategy ei --strategy range --init 20 --budget 400 --seeds 10 --test-fraction 0
      tansaku al simulate --property e_form --csv mp_e_form.csv.gz --strategy random --strategy stratified
        --model rf --init 1000 --batch 200 --budget 4000 --seeds 3 --test-fraction 0.05
      tansaku al simulate --goal 'band_gap>=3' --goal 'eps_total>=20' --subset paper --features structure
        --strategy joint --strategy random --strategy single:band_gap --init 20 --batch 10 --budget 400
      tansaku al simulate --csv matbench_expt_gap.csv.gz --cheap-csv matbench_mp_gap.csv.gz
        --goal 'gap=2.2:2.6' --expensive-cost 10 --init 20 --batch 10 --seeds 5
        (two levels: runs stop once half the targets are found, or at --budget, then a cost; strategies
        two-level, expensive, funnel, two-level-delta)
    """
    from tansaku.active.pools import pool_from_csv, pool_from_database
    from tansaku.active.simulate import Setup
    from tansaku.active.simulate import simulate as run

    if cheap_csv is not None:
        _simulate_two_levels(csv, cheap_csv, column, goal_texts or [], cheap_cost, expensive_cost,
                             strategy or ["two-level", "expensive", "funnel"], init, batch,
                             float("inf") if budget is None else budget, seeds, model,
                             trees, diversity, json_out, plot)
        return
    budget = 300 if budget is None else budget
    if goal_texts:
        if csv is not None or window is not None or maximize or minimize:
            raise TansakuError("--goal reads the database's values: give it without --csv, --range, --maximize "
                               "or --minimize (a window is a goal too: --goal 'band_gap=2:3')")
        _simulate_goals(goal_texts, strategy or ["joint", "random"], features, subset, init, batch, budget, seeds,
                        model, trees, diversity, json_out)
        return
    if not property_name:
        raise TansakuError("--property is needed (or --goal, repeatable, for several properties)")
    strategy = strategy or ["random", "uncertainty"]
    goal = goal_from_options(window, maximize, minimize)
    if csv is not None and from_db:
        raise TansakuError("give --db or --csv, not both")
    if csv is not None:
        pool = pool_from_csv(csv, column, progress_bar("descriptors"))
    else:
        pool = pool_from_database(database(create=False), property_name, features, subset,
                                  progress_bar("descriptors"))
    setup = Setup(pool.X, pool.y, goal, init, batch, budget, seeds, test_fraction, model, trees, calibrate,
                  diversity, top_fraction, strata=strata, names=pool.names,
                  init_mask=pool.containing(init_containing) if init_containing else None,
                  test_mask=~pool.containing(test_without) if test_without else None)
    result = run(setup, list(dict.fromkeys(strategy)), progress_bar("simulations"))
    result.update(property=property_name, source=pool.source)
    summary_table(result)
    _write_json(result, json_out)
    if plot:
        from tansaku.plots.figures import active_learning_curves

        active_learning_curves(result, plot, property_name)
        console.print(f"plot in {plot}")


def _median_reached(values: list, runs: int) -> str:
    """The median of the runs that got there, with how many did when not all."""
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    return f"{np.median(reached):.0f}" + ("" if len(reached) == runs else f" ({len(reached)}/{runs})")


def _write_json(result: dict, json_out: Path | None) -> None:
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1))
        console.print(f"curves in {json_out}")


def _simulate_goals(goal_texts: list[str], strategies: list[str], features: str, subset: str | None, init: int,
                    batch: int, budget: int, seeds: int, model: str, trees: int, diversity: float,
                    json_out: Path | None) -> None:
    """`al simulate --goal ...`: several properties at once (see `tansaku.active.multigoal`)."""
    from tansaku.active.multigoal import Condition, MultiSetup, simulate_multigoal
    from tansaku.active.pools import multi_property_pool

    conditions = [Condition.parse(text) for text in goal_texts]
    X, values, _ = multi_property_pool(database(create=False), [c.prop for c in conditions], features, subset,
                                       progress_bar("descriptors"))
    setup = MultiSetup(X, values, conditions, init, batch, budget, seeds, model, trees, diversity)
    result = simulate_multigoal(setup, list(dict.fromkeys(strategies)), progress_bar("simulations"))
    table = Table("strategy", "found at the end (median)", "evaluations for half (median)",
                  title=f"{result['n_pool']} in pool, {result['n_targets']} meet " + " and ".join(result["goals"]))
    for name, runs in result["strategies"].items():
        table.add_row(name, f"{np.median([r['found'][-1] for r in runs]):.0f}",
                      _median_reached([r["to_half"] for r in runs], len(runs)))
    console.print(table)
    _write_json(result, json_out)


def _simulate_two_levels(csv: Path | None, cheap_csv: Path, column: str | None, goal_texts: list[str],
                         cheap_cost: float, expensive_cost: float | None, strategies: list[str], init: int,
                         batch: int, budget: float, seeds: int, model: str, trees: int, diversity: float,
                         json_out: Path | None, plot: Path | None) -> None:
    """`al simulate --cheap-csv ...`: one property at two levels of theory (see `tansaku.active.multifidelity`)."""
    from tansaku.active.multifidelity import TwoLevelSetup, simulate_two_level
    from tansaku.active.multigoal import Condition
    from tansaku.active.pools import two_level_pool

    if csv is None:
        raise TansakuError("--cheap-csv needs --csv: the expensive level's values (e.g. experimental gaps)")
    if len(goal_texts) != 1:
        raise TansakuError(f"two levels take exactly one --goal, on the expensive level (got {len(goal_texts)}), "
                           "e.g. --goal 'gap=2.2:2.6'")
    if expensive_cost is None:
        raise TansakuError("--expensive-cost is needed with --cheap-csv: the price of one expensive value in units "
                           "of a cheap one (e.g. 10)")
    pool = two_level_pool(cheap_csv, csv, None, column)
    setup = TwoLevelSetup(pool.X, pool.cheap, pool.expensive, Condition.parse(goal_texts[0]), cheap_cost,
                          expensive_cost, init, batch, float(budget), seeds, model, trees, diversity)
    result = simulate_two_level(setup, list(dict.fromkeys(strategies)), progress_bar("simulations"))
    table = Table("strategy", "found at stop (median)", "cost for half (median)", "cheap / expensive paid",
                  title=f"{result['n_pool']} compositions hold both levels, {result['n_targets']} meet "
                        f"{result['goal']} at the expensive level")
    for name, runs in result["strategies"].items():
        table.add_row(name, f"{np.median([r['found'][-1] for r in runs]):.0f}",
                      _median_reached([r["cost_to_half"] for r in runs], len(runs)),
                      f"{np.median([r['cheap'][-1] for r in runs]):.0f} / "
                      f"{np.median([r['expensive'][-1] for r in runs]):.0f}")
    console.print(table)
    _write_json(result, json_out)
    if plot:
        from tansaku.plots.figures import two_level_curves

        two_level_curves(result, plot)
        console.print(f"plot in {plot}")


def summary_table(result: dict) -> None:
    from tansaku.active.simulate import evaluations_to_reach

    has_targets = result["goal"]["kind"] != "error"
    table = Table("strategy", "final MAE", "final R²", "68 % cover", *(("found", "evals for half") if has_targets
                                                                      else ()),
                  title=f"{result['n_pool']} in pool, {result.get('n_test', 0)} in test"
                  + (f", {result['n_targets']} targets" if has_targets else ""))
    for name, runs in result["strategies"].items():
        mae = np.array([r["mae"][-1] for r in runs])
        r2 = np.array([r["r2"][-1] for r in runs])
        cover = np.array([r["coverage_68"][-1] for r in runs])
        row = [name, f"{mae.mean():.3f} ± {mae.std():.3f}", f"{r2.mean():.3f}", f"{cover.mean():.2f}"]
        if has_targets:
            found = np.array([r["found"][-1] for r in runs])
            half = [evaluations_to_reach(r["evaluated"], r["found"], result["n_targets"] / 2, True) for r in runs]
            reached = [h for h in half if h is not None]
            row += [f"{np.median(found):.0f}",
                    f"{np.median(reached):.0f} ({len(reached)}/{len(runs)} seeds)" if reached else "not reached"]
        table.add_row(*row)
    console.print(table)


@app.command()
def suggest(
    model_paths: list[Path] = typer.Option(..., "--model", help="A model saved by 'tansaku train'; with --goal one "
                                           "per goal's property (repeatable)."),
    goal_texts: list[str] = typer.Option(None, "--goal", help="Several goals at once, repeatable: property>=LO, "
                                         "property<=HI or property=LO:HI (e.g. --goal 'band_gap>=3' --goal "
                                         "'eps_total>=20'); ranks by the probability of meeting all of them."),
    property_name: str = typer.Option(None, "--property", help="Checked against the model's property."),
    window: tuple[float, float] = typer.Option(None, "--range", callback=finite, help="Wanted window LO HI, in the "
                                               "property's units (not log10)."),
    maximize: bool = typer.Option(False, help="Wanted: the largest values."),
    minimize: bool = typer.Option(False, help="Wanted: the smallest values."),
    uncertain: bool = typer.Option(False, "--uncertainty", help="No target: improve the model (most uncertain, "
                                   "spread over descriptor space)."),
    strategy: str = typer.Option(None, help="Override the acquisition (default: range for --range, ei for "
                                 "--maximize/--minimize, uncertainty for --uncertainty)."),
    candidates: list[str] = typer.Option(["db-missing"], help="'db-missing' (stored materials without the "
                                         f"property), a CSV of formulas, or structure files ({STRUCTURE_FILES})."),
    n: int = typer.Option(10, "--n", help="How many to suggest."),
    diversity: float = typer.Option(1.0, callback=finite, help="Spread of the suggested batch (0: plain top-n; "
                                   "random and weighted draws are never spread)."),
    queue: str = typer.Option(None, help="Add the suggested materials to this subset, to compute them with "
                              "'tansaku run dielectric --query subset=NAME'."),
    out: Path = typer.Option(None, help="Also write the suggestions to OUT.csv or OUT.json (with --goal, each goal's "
                             "fields are CSV columns 'goals.<goal>.value', ...)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Rank candidates by an acquisition function of the model's prediction and uncertainty.

    Examples:
      tansaku al suggest --model gap.pkl --range 2 3 --candidates db-missing --n 5 --queue next
      tansaku al suggest --model gap.pkl --model eps.pkl --goal 'band_gap>=3' --goal 'eps_total>=20' --n 5
    """
    from tansaku.active.suggest import suggest as rank

    if out is not None:
        table_format(out)  # a wrong suffix is refused before anything is computed
    skipped: list[str] = []

    def skip(reason: str) -> None:
        skipped.append(reason)
        err_console.print(f"[red]skipped[/] {reason}", soft_wrap=True)

    if goal_texts:
        if window is not None or maximize or minimize or uncertain or strategy or property_name:
            raise TansakuError("--goal ranks by the probability of meeting every goal: give it without --range, "
                               "--maximize, --minimize, --uncertainty, --strategy or --property")
        _suggest_goals(model_paths, goal_texts, candidates, n, diversity, queue, json_out, out, skip, skipped)
        return
    if len(model_paths) != 1:
        raise TansakuError("one --model per suggestion (several models go with --goal, one per goal's property)")
    model_path = model_paths[0]
    if sum([window is not None, maximize, minimize, uncertain]) != 1:
        raise TansakuError("give exactly one goal: --range LO HI, --maximize, --minimize or --uncertainty")
    goal = goal_from_options(window, maximize, minimize)
    rows = rank(database(create=queue is not None or "db-missing" not in candidates), model_path, goal,
                candidates, n, strategy=strategy, diversity=diversity, queue=queue,
                property_name=property_name, progress=progress_bar("descriptors"), skipped=skip)
    _write_suggestions(out, rows)
    if json_out:
        console.print_json(json.dumps(rows))
        finish_batch(len(rows), len(skipped))
        return
    table = Table("rank", "candidate", "formula", "predicted", "±1σ interval", "score", "domain",
                  title=f"{len(rows)} suggestions, best score first")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), str(r["candidate"]), r["formula"], f"{r['value']:.3g}",
                      f"{r['value_low']:.3g} to {r['value_high']:.3g}", f"{r['score']:.3g}",
                      "" if r["in_domain"] else "[yellow]outside: " + "; ".join(r["domain"]) + "[/]")
    console.print(table)
    if queue:
        console.print(f"queued in subset {queue!r}: tansaku run dielectric --query subset={queue}")
    finish_batch(len(rows), len(skipped))


def _write_suggestions(out: Path | None, rows: list[dict]) -> None:
    if out is not None:
        write_table(out, [{"rank": i, **row} for i, row in enumerate(rows, 1)])
        err_console.print(f"wrote {len(rows)} suggestion{'s' * (len(rows) != 1)} to {out}")


def _suggest_goals(model_paths: list[Path], goal_texts: list[str], candidates: list[str], n: int, diversity: float,
                   queue: str | None, json_out: bool, out: Path | None, skip, skipped: list[str]) -> None:
    """`al suggest --goal ...`: one model per goal's property, ranked by the joint probability."""
    from tansaku.active.multigoal import Condition
    from tansaku.active.suggest_goals import suggest_for_goals

    conditions = [Condition.parse(text) for text in goal_texts]
    rows = suggest_for_goals(database(create=queue is not None or "db-missing" not in candidates), model_paths,
                             conditions, candidates, n, diversity=diversity, queue=queue,
                             progress=progress_bar("descriptors"), skipped=skip)
    _write_suggestions(out, rows)
    if json_out:
        console.print_json(json.dumps(rows))
        finish_batch(len(rows), len(skipped))
        return
    names = [str(c) for c in conditions]
    table = Table("rank", "candidate", "formula", *(f"{name}: value (P)" for name in names), "P(all)", "domain",
                  title=f"{len(rows)} suggestions, most likely to meet every goal first (errors independent)")
    for i, r in enumerate(rows, 1):
        cells = [f"{g['value']:.3g}" + (" measured" if g["measured"] else
                                          f" [{g['value_low']:.3g}, {g['value_high']:.3g}]")
                 + f" ({g['probability']:.2f})" for g in (r["goals"][name] for name in names)]
        table.add_row(str(i), str(r["candidate"]), r["formula"], *cells, f"{r['score']:.3g}",
                      "" if r["in_domain"] else "[yellow]outside: " + "; ".join(r["domain"]) + "[/]")
    console.print(table)
    if queue:
        console.print(f"queued in subset {queue!r}: tansaku run dielectric --query subset={queue}")
    finish_batch(len(rows), len(skipped))

