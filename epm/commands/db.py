"""`epm` commands: db."""

from __future__ import annotations

from epm.cli import app  # noqa: F401
