"""The `epm` command: the one entry point for operators.

Each group of commands lives in its own module under `epm/commands/` and registers itself on
`app`; this module only assembles them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="epm",
    help="Execution & Position Management: intents in, IB orders out, an exact ledger.",
    no_args_is_help=True,
    add_completion=False,
)

# Order is the order of `epm --help`.
_COMMAND_MODULES = (
    "epm.commands.demo",
    "epm.commands.db",
    "epm.commands.ledger",
    "epm.commands.intake",
    "epm.commands.orders",
    "epm.commands.replace",
    "epm.commands.sim",
    "epm.commands.bridge",
    "epm.commands.ops",
    "epm.commands.limits",
    "epm.commands.risk",
    "epm.commands.audit",
    "epm.commands.recon",
    "epm.commands.books",
    "epm.commands.books_ops",
    "epm.commands.replay",
    "epm.commands.report",
    "epm.commands.runbook",
    "epm.commands.top",
    "epm.commands.services",
    "epm.commands.stress",
    "epm.commands.metrics",
)


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name)


def main() -> None:
    import sys

    argv = sys.argv[1:]
    if argv[:1] == ["kill-switch"] and not {"--help", "-h"} & set(argv):
        # The emergency path: the venue is told to cancel before Typer and the command modules
        # (pydantic, SQLAlchemy) load; see epm/killswitch_fast.py.
        from epm.killswitch_fast import main as kill_switch_main

        raise SystemExit(kill_switch_main(argv[1:]))
    from epm.logging import LogConfigError, configure_logging

    try:
        configure_logging()
    except LogConfigError as e:
        print(f"epm: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    _load_commands()
    app()
