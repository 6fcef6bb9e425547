"""The small JSON state file in every step directory: enough to resume or audit without the database."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tansaku.files import write_atomically

STATE_FILE = "state.json"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def seconds_since(started: str | None, until: datetime | None = None) -> float:
    """Wall seconds from an ISO time stamp (`now()`'s format) to `until` (default: now); 0 without a start."""
    if not started:
        return 0.0
    return max(0.0, ((until or datetime.now(UTC)) - datetime.fromisoformat(started)).total_seconds())


@dataclass
class StepState:
    step: str
    status: str = "new"  # new, running, done, failed, cancelled
    attempt: int = 0
    job_id: str | None = None
    executor: str | None = None
    overrides: dict = field(default_factory=dict)  # {namelist: {key: value}} set by error handlers
    structure: dict | None = None  # input structure (a relaxation restart replaces it)
    handlers: list[dict] = field(default_factory=list)  # what each handler changed and why
    outputs: dict | None = None
    error: str | None = None
    started: str | None = None  # of the current (last) attempt
    finished: str | None = None
    seconds: float = 0.0  # wall time of all attempts together, killed ones included
    # CPU time of all attempts: QE's own figure × processes, or wall × processes for an attempt cut off before it
    cpu_seconds: float = 0.0
    code_version: str | None = None

    @classmethod
    def load(cls, directory: Path, step: str) -> StepState:
        path = directory / STATE_FILE
        if not path.exists():
            return cls(step=step)
        return cls(**json.loads(path.read_text()))

    def save(self, directory: Path) -> None:
        """Atomic write: a kill never leaves a half-written state file."""
        text = json.dumps(asdict(self), indent=1, default=_jsonable)
        write_atomically(directory / STATE_FILE, lambda handle: handle.write(text.encode()))


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
