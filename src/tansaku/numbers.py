"""What counts as a number in values read from users' files and providers' pages (JSON, TOML): one definition,
so the importers and the campaign file refuse the same things."""

from __future__ import annotations

import math


def is_finite_number(value: object) -> bool:
    """A finite int or float. False for a bool (JSON's `true` is not 1), text, None, NaN and infinities."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def finite_or_none(value: float) -> float | None:
    """The value as a float, or None for NaN and infinities: what JSON (and PostgreSQL's JSONB) can hold."""
    return float(value) if math.isfinite(value) else None
