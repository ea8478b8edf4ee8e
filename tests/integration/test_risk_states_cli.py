"""`epm risk status|halt|reduce|resume` against a real ledger (SQLite and PostgreSQL) and Redis:
a halt by any named actor, a resume only by an operator in EPM_RISK_OPERATORS, both audited with
who and why; bad arguments are a message and exit 2, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from store.schema import audit_log


@pytest.fixture
def cli(engine: Engine, epm_env: pytest.MonkeyPatch, redis_url: str) -> Iterator[CliRunner]:
    from epm.cli import _load_commands
    from epm.redis_conn import reset_redis_cache
    from epm.settings import reset_settings_cache

    redis.Redis.from_url(redis_url).flushdb()
    epm_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    epm_env.setenv("EPM_REDIS_URL", redis_url)
    epm_env.setenv("EPM_RISK_OPERATORS", "alice, carol")
    reset_settings_cache()
    reset_redis_cache()
    _load_commands()
    yield CliRunner()
    reset_settings_cache()
    reset_redis_cache()


def run(runner: CliRunner, *args: str) -> Result:
    from epm.cli import app

    return runner.invoke(app, ["risk", *args])


def test_halt_status_resume_audited_and_authorised(cli: CliRunner, engine: Engine) -> None:
    halted = run(cli, "halt", "Momentum_EQ", "--reason", "news pending", "--actor", "bob")
    assert halted.exit_code == 0, halted.output
    assert "Momentum_EQ: HALTED (v1) by bob: news pending" in halted.output
    status = json.loads(run(cli, "status", "--json").output)
    assert status["global"]["state"] == "ACTIVE"
    (strategy,) = status["strategies"]
    assert (strategy["scope"], strategy["state"], strategy["actor"], strategy["version"]) == (
        "Momentum_EQ",
        "HALTED",
        "bob",
        1,
    )
    # bob may stop trading but not start it again.
    refused = run(cli, "resume", "Momentum_EQ", "--reason", "done", "--actor", "bob")
    assert refused.exit_code == 4 and "EPM_RISK_OPERATORS" in refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    resumed = run(cli, "resume", "Momentum_EQ", "--reason", "news out", "--actor", "carol")
    assert resumed.exit_code == 0 and "ACTIVE (v2) by carol" in resumed.output
    again = run(cli, "resume", "Momentum_EQ", "--reason", "news out", "--actor", "carol")
    assert again.exit_code == 0 and "already ACTIVE" in again.output
    with engine.connect() as conn:
        trail = conn.execute(
            sa.select(audit_log)
            .where(audit_log.c.target == "risk_state:Momentum_EQ")
            .order_by(audit_log.c.id)
        ).all()
    assert [(a.actor, a.action, a.details["reason"]) for a in trail] == [
        ("bob", "risk_state_halted", "news pending"),
        ("carol", "risk_state_active", "news out"),
    ]
    desk = run(cli, "reduce", "--global", "--reason", "vol spike", "--actor", "bob")
    assert desk.exit_code == 0 and "global: REDUCING (v1)" in desk.output
    assert "global" in run(cli, "status").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["halt", "--reason", "x", "--actor", "bob"], "name one STRATEGY or --global"),
        (["halt", "Momentum_EQ", "--global", "--reason", "x", "--actor", "bob"], "name one"),
        (["halt", "Nope", "--reason", "x", "--actor", "bob"], "unknown strategy 'Nope'"),
        (["halt", "Momentum_EQ", "--reason", " ", "--actor", "bob"], "must not be empty"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(
    cli: CliRunner, args: list[str], message: str
) -> None:
    result = run(cli, *args)
    assert result.exit_code == 2 and message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_actor_is_required(cli: CliRunner) -> None:
    result = run(cli, "halt", "Momentum_EQ", "--reason", "x")
    assert result.exit_code == 2 and "--actor" in result.output
