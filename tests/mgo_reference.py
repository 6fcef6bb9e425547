"""MgO with the 'test' preset: the reference values and the check that a resumed CLI run reaches them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REFERENCE = json.loads((Path(__file__).parent / "data" / "mgo_test_preset.json").read_text())


def rerun_reaches_reference(argv: list[str], out_json: Path, key: str) -> dict:
    """Run the CLI again to completion; its JSON entry for `key` must be done with the reference values."""
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    out = json.loads(out_json.read_text())[key]
    assert out["status"] == "done"
    for name in ("band_gap", "eps_electronic", "eps_ionic"):
        assert out[name] == pytest.approx(REFERENCE[name], rel=0.02), name
    return out
