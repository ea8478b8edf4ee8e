"""Risk use cases: the limits in force for this process.

`current_limits` reads the shipped defaults (`epm/limits/default.toml`) once per process; a file
that does not validate raises `models.limits.LimitsInvalid` with the message naming every field,
so the first intent a misconfigured process sees fails loudly instead of trading unchecked.
"""

from __future__ import annotations

from functools import lru_cache

from epm.limits import load_limits
from models.limits import Limits

__all__ = ["current_limits"]


@lru_cache(maxsize=1)
def current_limits() -> Limits:
    """The validated default limits (cached: the file does not change under a running process)."""
    return load_limits()
