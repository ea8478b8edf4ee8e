"""Reading risk limits files: the shipped default (`default.toml`, package data) or an
operator's file. The validation itself is pure, in `models.limits`."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from models.limits import Limits, LimitsInvalid, parse_limits

__all__ = ["DEFAULT_NAME", "load_limits"]

DEFAULT_NAME = "default.toml"


def load_limits(path: Path | None = None) -> Limits:
    """The limits in `path`, or the shipped defaults; `LimitsInvalid` with a clear message
    (file name, every offending field) when the file is missing, not TOML or does not validate."""
    if path is None:
        source = f"epm/limits/{DEFAULT_NAME}"
        text = resources.files("epm.limits").joinpath(DEFAULT_NAME).read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise LimitsInvalid(f"{source}: cannot read the limits file: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LimitsInvalid(f"{source}: not valid TOML: {e}") from None
    return parse_limits(data, source)
