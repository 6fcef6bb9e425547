"""A campaign's TOML description, read and checked once so that a typo fails before any calculation runs."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tansaku import TansakuError
from tansaku.active.acquisition import STRATEGIES, Goal
from tansaku.active.multigoal import Condition
from tansaku.files import unreadable
from tansaku.models.learners import MODELS
from tansaku.numbers import is_finite_number
from tansaku.workflows.job import Job

# what the DFT oracle computes, and with which workflow: `run dielectric`, `run electronic`, its hybrid steps
DIELECTRIC_PROPERTIES = ("band_gap", "eps_electronic", "eps_ionic", "eps_total")
ELECTRONIC_PROPERTIES = ("band_gap", "band_gap_direct", "m_e", "m_h", "m_e_band", "m_h_band")
HYBRID_PROPERTIES = {"band_gap_hse06": "hse06", "band_gap_ddh": "ddh"}  # property: functional
MASS_PROPERTIES = ("m_e", "m_h", "m_e_band", "m_h_band")
DFT_PROPERTIES = tuple(dict.fromkeys(DIELECTRIC_PROPERTIES + ELECTRONIC_PROPERTIES + tuple(HYBRID_PROPERTIES)))
EXAMPLE = """\
name = "gap-2-3"                 # campaigns are found again by name: rerunning continues this one
property = "band_gap"            # band_gap, eps_electronic, eps_ionic, eps_total (or any stored, for dataset)

[goal]
kind = "range"                   # range | maximize | minimize | error (improve the model)
lo = 2.0
hi = 3.0
stop_hits = 5                    # optional: stop after this many materials inside the window

[acquisition]
strategy = "range"               # default: range for windows, ei to maximize/minimize, uncertainty for error
                                 # (error: also weighted, or error-model = where CV errors are large)
batch = 2                        # DFT runs per round
diversity = 1.0                  # 0: plain ranking; >0 penalizes near-copies inside a batch (not random draws)
cost_aware = false               # rank by score per estimated CPU hour

[budget]
runs = 10                        # DFT runs (or oracle look-ups) in total
cpu_hours = 50.0                 # optional

[candidates]
query = "source=generated"       # which stored materials may be chosen (tansaku run --query syntax)
# metal_screen = "matbench_mp_gap.csv.gz"  # optional: a composition,band-gap table with metals at 0 eV; a
                                 # candidate its classifier finds likely a metal (P >= 0.5) is never chosen

[training]
query = "subset=paper"           # materials whose stored values teach the model at the start
init_random = 0                  # candidates computed at random before the model chooses

[model]
learner = "et"                   # rf, et, lgbm, lgbm-cal, lgbm-lin, lgbm-chgnet, lgbm-attn, blend
# pretrained = "e_form.pt"       # lgbm-attn only: weights from `tansaku pretrain` to start its network from
features = "composition"         # composition or structure
trees = 300
cv_folds = 5                     # per-round cross-validated error; 0 skips it

[oracle]
kind = "dft"                     # dft: run the dielectric workflow; dataset: read stored values (simulation)
# method = "import:oxi_diel_db"  # dataset oracle: the stored values that play the truth
                                 # (give [dft] pseudo_dir too for cost estimates in a simulation)

[dft]
preset = "standard"
pseudo_dir = "/path/to/pseudodojo-nc-sr-pbe-v0.4"
workers = 1
mpi_procs = 2
run_dir = "runs"
executor = "local"               # or slurm, with slurm_profile = "profile.toml"
# set = { ecutwfc = 60 }
"""

EXAMPLE_GOALS = """\
name = "high-k"                  # several goals: a candidate counts when it meets every one
# property = "band_gap"          # optional: the goals name their properties

[[goal]]
property = "band_gap"
lo = 3.0                         # lo only: at least; hi only: at most; both: a window

[[goal]]
property = "eps_total"
lo = 20.0

[acquisition]
strategy = "joint"               # the probability of meeting every goal: one model per property, their
                                 # errors counted independent (a candidate's known values count as certain)
batch = 5
diversity = 0.1                  # weak spreading: on the high-k screen joint needed 107 evaluations to find
                                 # half at 0.1, 133 at 1.0 (benchmarks/results/al_multigoal_diversity-0.1.md)

[budget]
runs = 40
stop_hits = 10                   # optional: stop once this many candidates meet every goal

[candidates]
query = "subset=paper"

[training]
init_random = 20

[model]
learner = "et"
features = "structure"
trees = 100
cv_folds = 0

[oracle]
kind = "dataset"                 # or dft: run dielectric gives band_gap and every ε at once
method = "import:oxi_diel_db"
"""

EXAMPLE_TWO_LEVELS = """\
name = "green-emitter"           # a hybrid-functional gap of 2.2-2.6 eV and light electrons

[[goal]]
property = "band_gap_hse06"      # the expensive level: HSE06 (nsc) on top of the PBEsol run
lo = 2.2
hi = 2.6
cheap = "band_gap"               # its cheap level: the PBEsol gap, screened first; a candidate is promoted
                                 # to the hybrid when P(every goal | its PBEsol gap) is worth the price

[[goal]]
property = "m_e"                 # computed at the cheap level (conductivity mass, BoltzTraP2)
hi = 0.5

[levels]
# CPU hours per candidate at each level: a first guess, replaced by the median measured on this campaign's
# picks once there are some (a dataset oracle needs both: they are the prices in a simulation)
cheap_cpu_hours = 0.05
expensive_cpu_hours = 0.5

[acquisition]
strategy = "joint"               # two levels: options are "screen" (cheap) and "promote" (expensive),
batch = 2                        # ranked by expected hits per CPU hour
diversity = 1.0

[budget]
runs = 12                        # picks at either level
stop_hits = 2

[candidates]
query = "subset=chalcogenides"   # e.g. from `tansaku generate --prototype MgO --site A=Mg,Ca,Sr,Ba --anion S,Se`

[training]
init_random = 2                  # candidates computed at both levels first: the pairs the hybrid model needs

[model]
learner = "et"
features = "composition"
trees = 100
cv_folds = 0

[oracle]
kind = "dft"                     # cheap: run electronic; expensive: its hybrid steps (relaxation and bands
                                 # reused); method ...:nsc

[dft]
preset = "test"
pseudo_dir = "/path/to/pseudodojo-nc-sr-pbe-v0.4"
mpi_procs = 2
run_dir = "runs"
# set = { hybrid = "scf" }       # self-consistent hybrids instead of nsc
"""


@dataclass
class CampaignConfig:
    name: str
    property: str
    goal: Goal
    stop_hits: int | None = None
    stop_value: float | None = None
    strategy: str = "range"
    batch: int = 1
    diversity: float = 1.0
    cost_aware: bool = False
    seed: int = 0
    budget_runs: int = 10
    budget_cpu_hours: float | None = None
    candidates_query: str = "source=generated"
    metal_screen: str | None = None  # a gap table: candidates likely to be metals are left out (models.metal_screen)
    training_query: str | None = None
    init_random: int = 0
    learner: str = "et"
    features: str = "composition"
    trees: int = 300
    cv_folds: int = 5
    pretrained: str | None = None
    oracle: str = "dft"
    oracle_method: str | None = None
    dft: Job = field(default_factory=Job)
    goals: list[Condition] = field(default_factory=list)  # [[goal]]: several properties, each a bound or window
    # two levels of theory: {"property": expensive goal property, "cheap": its cheap level, "cheap_cpu_hours",
    # "expensive_cpu_hours"}; None: one level
    levels: dict | None = None

    def level_properties(self) -> dict[str, list[str]]:
        """The properties each level's oracle call answers: one level, everything; with two, the cheap level
        everything but the expensive property (and its cheap one), the expensive level everything."""
        if not self.levels:
            return {"": self.properties}
        cheap = [p for p in self.properties if p != self.levels["property"]] + [self.levels["cheap"]]
        return {"cheap": cheap, "expensive": self.properties + [self.levels["cheap"]]}

    @property
    def properties(self) -> list[str]:
        """The properties the oracle answers: every goal's, or the one property."""
        return list(dict.fromkeys(c.prop for c in self.goals)) if self.goals else [self.property]

    def as_dict(self) -> dict:
        data = asdict(self)
        data["goal"] = {"kind": self.goal.kind, "lo": self.goal.lo, "hi": self.goal.hi}
        data["goals"] = [str(c) for c in self.goals]
        data["dft"] = self.dft.as_table()
        return data

    def identity(self) -> dict:
        """What may not change when a campaign is continued (budget, batch and DFT settings may)."""
        data = self.as_dict()
        keys = ("property", "goal", "oracle", "oracle_method", "candidates_query")
        # campaigns stored before several goals (or levels) existed have no "goals" ("levels"): as now
        return ({k: data[k] for k in keys} | ({"goals": data["goals"]} if self.goals else {})
                | ({"levels": {k: self.levels[k] for k in ("property", "cheap")}} if self.levels else {}))


def _section(data: dict, name: str, where: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise TansakuError(f"{where}: [{name}] must be a table")
    return value


def _number(table: dict, key: str, section: str, where: str, default):
    """A finite number from the file, or the default when the key is absent; anything else names the key."""
    value = table.get(key, default)
    if value is default:
        return value
    if not is_finite_number(value):
        raise TansakuError(f"{where}: [{section}] {key} = {value!r} is not a finite number")
    return float(value)


def _whole(table: dict, key: str, section: str, where: str, default):
    """A whole number (7 or 7.0) from the file, or the default when the key is absent."""
    value = _number(table, key, section, where, default)
    if value is default:
        return value
    if value != int(value):
        raise TansakuError(f"{where}: [{section}] {key} = {table[key]!r} is not a whole number")
    return int(value)


def load_config(path: Path) -> CampaignConfig:
    if not path.is_file():
        raise TansakuError(f"{path}: no such campaign file (see `tansaku campaign example`)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TansakuError(f"{path}: not UTF-8 text, so not a campaign file (TOML)") from None
    except OSError as exc:
        raise TansakuError(f"{path}: {unreadable(exc)}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TansakuError(f"{path}: not valid TOML ({exc})") from exc
    return config_from_dict(data, str(path))


def config_from_dict(data: dict, where: str = "campaign") -> CampaignConfig:
    known = {"name", "property", "goal", "acquisition", "budget", "candidates", "training", "model", "oracle", "dft",
             "levels"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TansakuError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("name", "property") if not isinstance(data.get("goal"), list) else ("name",):
        if not isinstance(data.get(key), str) or not data[key]:
            raise TansakuError(f"{where}: '{key}' is required (a string)")
    if isinstance(data.get("goal"), list):
        return _several_goals(data, where)
    if "levels" in data:
        raise TansakuError(f"{where}: [levels] goes with [[goal]] tables, one of which names its cheap level "
                           "(see `tansaku campaign example --two-levels`)")
    goal_t, acq, budget = (_section(data, s, where) for s in ("goal", "acquisition", "budget"))
    cand, train, model = (_section(data, s, where) for s in ("candidates", "training", "model"))
    oracle, dft = _section(data, "oracle", where), _section(data, "dft", where)
    try:
        goal = Goal(goal_t.get("kind", "error"), _number(goal_t, "lo", "goal", where, None),
                    _number(goal_t, "hi", "goal", where, None))
    except TansakuError as exc:
        raise TansakuError(f"{where}: [goal] {exc}") from None
    default_strategy = {"range": "range", "maximize": "ei", "minimize": "ei", "error": "uncertainty"}[goal.kind]
    config = CampaignConfig(
        name=data["name"], property=data["property"], goal=goal,
        stop_hits=_whole(goal_t, "stop_hits", "goal", where, None),
        stop_value=_number(goal_t, "stop_value", "goal", where, None),
        strategy=acq.get("strategy", default_strategy), batch=_whole(acq, "batch", "acquisition", where, 1),
        diversity=_number(acq, "diversity", "acquisition", where, 1.0),
        cost_aware=bool(acq.get("cost_aware", False)), seed=_whole(acq, "seed", "acquisition", where, 0),
        budget_runs=_whole(budget, "runs", "budget", where, 10),
        budget_cpu_hours=_number(budget, "cpu_hours", "budget", where, None),
        candidates_query=cand.get("query", "source=generated"), metal_screen=cand.get("metal_screen"),
        training_query=train.get("query"), init_random=_whole(train, "init_random", "training", where, 0),
        learner=model.get("learner", "et"), features=model.get("features", "composition"),
        trees=_whole(model, "trees", "model", where, 300), cv_folds=_whole(model, "cv_folds", "model", where, 5),
        pretrained=model.get("pretrained"),
        oracle=oracle.get("kind", "dft"), oracle_method=oracle.get("method"),
        dft=Job.from_table(dft, f"{where}: [dft]"),
    )
    _validate(config, where)
    return config


def _several_goals(data: dict, where: str) -> CampaignConfig:
    """A campaign with [[goal]] tables: each a property with lo, hi or both; the joint acquisition."""
    goals = []
    for i, table in enumerate(data["goal"], 1):
        if not isinstance(table, dict) or not isinstance(table.get("property"), str):
            raise TansakuError(f"{where}: [[goal]] number {i} needs property = \"name\" and lo, hi or both")
        extra = sorted(set(table) - {"property", "lo", "hi", "cheap"})
        if extra:
            raise TansakuError(f"{where}: [[goal]] number {i}: unknown key(s) {', '.join(extra)} (property, lo, hi, "
                               "cheap; stop_hits goes in [budget] when there are several goals)")
        try:
            goals.append(Condition(table["property"], _number(table, "lo", "goal", where, None),
                                   _number(table, "hi", "goal", where, None)))
        except TansakuError as exc:
            raise TansakuError(f"{where}: [[goal]] number {i}: {exc}") from None
    if len({c.prop for c in goals}) != len(goals):
        raise TansakuError(f"{where}: two [[goal]] tables on one property: give it one window instead")
    levels = _levels(data, goals, where)
    first = goals[0]
    single = dict(data, goal={"kind": "range", "lo": first.lo, "hi": first.hi} if first.lo is not None
                  and first.hi is not None else {"kind": "maximize" if first.lo is not None else "minimize"},
                  property=data.get("property") or first.prop)
    acq = dict(_section(data, "acquisition", where))
    strategy = acq.pop("strategy", "joint")
    if strategy != "joint":
        raise TansakuError(f"{where}: several goals are searched with strategy 'joint' (the probability of meeting "
                           f"every goal), not {strategy!r}")
    budget = dict(_section(data, "budget", where))
    stop_hits = _whole(budget, "stop_hits", "budget", where, None)
    budget.pop("stop_hits", None)
    single.update(acquisition=acq, budget=budget)
    single.pop("levels", None)
    config = config_from_dict(single, where)
    config.goals, config.strategy, config.stop_hits, config.levels = goals, "joint", stop_hits, levels
    if config.property not in config.properties:
        raise TansakuError(f"{where}: property {config.property!r} has no [[goal]] "
                           f"(goals: {', '.join(config.properties)})")
    if config.oracle == "dft" and not set(config.properties) <= set(DFT_PROPERTIES):
        raise TansakuError(f"{where}: the DFT oracle computes {', '.join(DFT_PROPERTIES)}, not "
                           f"{', '.join(sorted(set(config.properties) - set(DFT_PROPERTIES)))}")
    if levels:
        _check_levels(config, where)
    return config


def _levels(data: dict, goals: list[Condition], where: str) -> dict | None:
    """[[goal]] cheap = "..." and [levels]: the two levels of theory, or None for one level."""
    tables = [t for t in data["goal"] if "cheap" in t]
    table = _section(data, "levels", where)
    if not tables:
        if table:
            raise TansakuError(f"{where}: [levels] is set but no [[goal]] names its cheap level "
                               "(cheap = \"band_gap\" beside property = \"band_gap_hse06\")")
        return None
    if len(tables) > 1:
        raise TansakuError(f"{where}: [[goal]] cheap is given on {len(tables)} goals; one property can have a "
                           "cheap level")
    expensive, cheap = tables[0]["property"], tables[0]["cheap"]
    if not isinstance(cheap, str) or not cheap or cheap == expensive:
        raise TansakuError(f"{where}: [[goal]] {expensive}: cheap = {cheap!r} must name another property (its "
                           "cheap level, e.g. band_gap for band_gap_hse06)")
    if cheap in {c.prop for c in goals}:
        raise TansakuError(f"{where}: the cheap level {cheap!r} of {expensive!r} is a goal of its own; a hit is "
                           "judged on the expensive level: drop that [[goal]]")
    extra = sorted(set(table) - {"cheap_cpu_hours", "expensive_cpu_hours"})
    if extra:
        raise TansakuError(f"{where}: [levels]: unknown key(s) {', '.join(extra)} (cheap_cpu_hours, "
                           "expensive_cpu_hours)")
    prices = {key: _number(table, key, "levels", where, None) for key in ("cheap_cpu_hours", "expensive_cpu_hours")}
    for key, price in prices.items():
        if price is not None and price <= 0:
            raise TansakuError(f"{where}: [levels] {key} = {price} must be positive")
    if None not in prices.values() and prices["cheap_cpu_hours"] >= prices["expensive_cpu_hours"]:
        raise TansakuError(f"{where}: [levels] cheap_cpu_hours ({prices['cheap_cpu_hours']}) is not below "
                           f"expensive_cpu_hours ({prices['expensive_cpu_hours']}): nothing to gain from the "
                           "cheap level")
    return {"property": expensive, "cheap": cheap, **prices}


def _check_levels(config: CampaignConfig, where: str) -> None:
    levels = config.levels
    if config.budget_runs < 2 * config.init_random:
        raise TansakuError(f"{where}: [budget] runs = {config.budget_runs} cannot pay for [training] init_random = "
                           f"{config.init_random} candidates at both levels ({2 * config.init_random} runs): raise "
                           "the budget or lower init_random")
    if config.oracle == "dataset" and None in (levels["cheap_cpu_hours"], levels["expensive_cpu_hours"]):
        missing = [k for k in ("cheap_cpu_hours", "expensive_cpu_hours") if levels[k] is None]
        raise TansakuError(f"{where}: [levels] {', '.join(missing)}: a simulation has no measured cost, give each "
                           "level its price in CPU hours")
    if config.oracle != "dft":
        return
    if levels["property"] not in HYBRID_PROPERTIES or levels["cheap"] != "band_gap":
        raise TansakuError(f"{where}: with the DFT oracle the two levels are a hybrid gap "
                           f"({', '.join(HYBRID_PROPERTIES)}) over cheap = \"band_gap\" (PBEsol), not "
                           f"{levels['property']!r} over {levels['cheap']!r}")
    costly = [c.prop for c in config.goals if c.prop in HYBRID_PROPERTIES and c.prop != levels["property"]]
    if costly:
        raise TansakuError(f"{where}: [[goal]] {', '.join(costly)} is a hybrid gap too, known only at the "
                           "expensive level; a two-level campaign screens on the other goals")


def _validate(c: CampaignConfig, where: str) -> None:
    def bad(message: str) -> TansakuError:
        return TansakuError(f"{where}: {message}")

    if c.strategy not in STRATEGIES:
        raise bad(f"unknown acquisition strategy {c.strategy!r} (choose from {', '.join(STRATEGIES)})")
    if not STRATEGIES[c.strategy].campaign:
        raise bad(f"strategy {c.strategy!r} is for simulations only (`tansaku al simulate`); for a campaign use "
                  "uncertainty, weighted or error-model (model error), range (a window) or ei/pi/ucb")
    if c.strategy == "error-model" and (c.goal.kind != "error" or c.cv_folds < 2):
        raise bad("strategy 'error-model' draws where the model's cross-validated errors are large: it needs "
                  "[goal] kind = 'error' and [model] cv_folds of at least 2")
    if STRATEGIES[c.strategy].needs_window and c.goal.kind != "range":
        raise bad(f"strategy {c.strategy!r} needs [goal] kind = 'range' with lo and hi")
    if STRATEGIES[c.strategy].needs_goal and c.goal.kind == "error":
        raise bad(f"strategy {c.strategy!r} needs a range, maximize or minimize goal")
    if c.batch < 1 or c.budget_runs < 1:
        raise bad("[acquisition] batch and [budget] runs must be at least 1")
    if c.budget_cpu_hours is not None and c.budget_cpu_hours <= 0:
        raise bad("[budget] cpu_hours must be positive")
    if c.cost_aware and c.strategy in ("greedy", "ucb", "weighted", "error-model"):
        raise bad(f"cost_aware divides scores by cost and needs non-negative scores; {c.strategy!r} has none")
    if c.learner not in MODELS:
        raise bad(f"unknown learner {c.learner!r} (choose from {', '.join(MODELS)})")
    if c.pretrained is not None and c.learner != "lgbm-attn":
        raise bad(f"[model] pretrained starts lgbm-attn's network; learner {c.learner!r} has none")
    if c.pretrained is not None and not Path(c.pretrained).is_file():
        raise bad(f"[model] pretrained: {c.pretrained}: no such file (make it with `tansaku pretrain`)")
    if c.metal_screen is not None and not Path(c.metal_screen).is_file():
        raise bad(f"[candidates] metal_screen: {c.metal_screen}: no such file (a composition,band-gap table with "
                  "metals at 0 eV, e.g. matbench_mp_gap.csv.gz)")
    if c.features not in ("composition", "structure"):
        raise bad(f"unknown features {c.features!r} (composition or structure)")
    if c.oracle not in ("dft", "dataset"):
        raise bad(f"unknown oracle {c.oracle!r} (dft or dataset)")
    if c.oracle == "dft" and c.property not in DFT_PROPERTIES and not c.goals:
        raise bad(f"the DFT oracle computes {', '.join(DFT_PROPERTIES)}, not {c.property!r}")
    if c.oracle == "dataset" and not c.oracle_method:
        raise bad("the dataset oracle needs [oracle] method, the stored values that play the truth "
                  "(e.g. 'import:oxi_diel_db')")
    if c.training_query is None and c.init_random == 0:
        raise bad("the model needs something to learn from: [training] query and/or init_random > 0")
