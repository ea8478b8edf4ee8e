"""`epm limits set|unset|show` against a real ledger (SQLite and PostgreSQL): an override is
validated before anything is written, lands with its audit row, takes effect on the next intent
without a restart, and is shown with who, when and why; `unset` puts the file's value back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

from epm.streams import REJECT_STREAM
from models.limits import LimitsInvalid, instrument_limits, strategy_limits
from services.audit import verify_audit
from services.intake import process_submission
from services.risk.current_limits import current_limits, set_override, unset_override
from store.schema import audit_log, limit_overrides

NOW = datetime(2025, 11, 21, 15, 0, tzinfo=UTC)


@pytest.fixture
def cli(engine: Engine, epm_env: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    from epm.cli import _load_commands
    from epm.settings import reset_settings_cache

    epm_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    reset_settings_cache()
    _load_commands()
    yield CliRunner()
    reset_settings_cache()


def run(runner: CliRunner, *args: str) -> Result:
    from epm.cli import app

    return runner.invoke(app, list(args))


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        n_over = conn.execute(sa.select(sa.func.count()).select_from(limit_overrides)).scalar()
        n_audit = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()
    return int(n_over or 0), int(n_audit or 0)


def test_set_is_audited_in_the_same_transaction_and_takes_effect(engine: Engine) -> None:
    assert instrument_limits(current_limits(engine), "SPY").max_order_quantity == Decimal("1000000")
    set_override(
        engine,
        path="instruments.SPY.max_order_quantity",
        value="500",
        actor="alice",
        reason="thin book",
        now=NOW,
    )
    effective = current_limits(engine)
    assert instrument_limits(effective, "SPY").max_order_quantity == Decimal("500")
    assert instrument_limits(effective, "QQQ").max_order_quantity == Decimal("1000000")
    assert _counts(engine) == (1, 1)
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_log)).one()
    assert (row.actor, row.action, row.target) == (
        "alice",
        "limits_set",
        "limit:instruments.SPY.max_order_quantity",
    )
    assert row.details["value"] == "500" and row.details["reason"] == "thin book"
    assert verify_audit(engine).ok


def test_newest_override_wins_and_unset_restores_the_file(engine: Engine) -> None:
    path = "strategies.Momentum_EQ.max_active_intents"
    set_override(engine, path=path, value="7", actor="a", reason="r1", now=NOW)
    set_override(engine, path=path, value="3", actor="b", reason="r2", now=NOW)
    assert strategy_limits(current_limits(engine), "Momentum_EQ").max_active_intents == 3
    unset_override(engine, path=path, actor="c", reason="back to normal", now=NOW)
    assert strategy_limits(current_limits(engine), "Momentum_EQ").max_active_intents == 50
    assert _counts(engine) == (3, 3)
    with pytest.raises(LimitsInvalid, match="no override in force"):
        unset_override(engine, path=path, actor="c", reason="again", now=NOW)
    assert _counts(engine) == (3, 3)
    assert verify_audit(engine).chained == 3


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("instruments.SPY.max_order_qty", "5", "unknown limit field 'max_order_qty'"),
        ("risk.SPY.max_order_quantity", "5", "unknown limit path"),
        ("version", "2", "unknown limit path"),
        ("defaults.instrument.max_order_quantity", "lots", "max_order_quantity"),
        ("defaults.instrument.max_order_quantity", "-5", "greater than 0"),
        ("strategies.X.max_active_intents", "2.5", "max_active_intents"),
        ("account.min_margin_headroom", "1.5", "less than 1"),
        ("account.min_margin_headroom", "NaN", "min_margin_headroom"),
        ("instruments.SPY.max_order_notional", "  ", "empty"),
    ],
)
def test_bad_path_or_value_writes_nothing(
    engine: Engine, path: str, value: str, message: str
) -> None:
    with pytest.raises(LimitsInvalid, match=message):
        set_override(engine, path=path, value=value, actor="a", reason="r", now=NOW)
    assert _counts(engine) == (0, 0)


def test_intake_applies_an_override_on_the_next_intent(engine: Engine, redis_url: str) -> None:
    rds = redis.Redis.from_url(redis_url, decode_responses=True)
    rds.delete(REJECT_STREAM)
    payload = {
        "strategy": "Momentum_EQ",
        "instrument": "SPY",
        "side": "BUY",
        "quantity": "800",
        "urgency": "Immediate",
        "time_in_force": "DAY",
    }

    def submit(signal_id: str) -> dict[str, object]:
        return process_submission(
            {**payload, "signal_id": signal_id},
            engine=engine,
            redis_client=rds,
            now=NOW,
            max_active=lambda _s: 10,
        )

    try:
        assert submit("sig-before")["reason"] is None
        set_override(
            engine,
            path="instruments.SPY.max_order_quantity",
            value="500",
            actor="alice",
            reason="thin book",
            now=NOW,
        )
        refused = submit("sig-after")
        assert refused["status"] == "REJECTED" and refused["reason"] == "RISK_LIMIT"
        (entry,) = [f for _i, f in rds.xrange(REJECT_STREAM)]
        assert "800" in json.dumps(entry) and "500" in json.dumps(entry)
    finally:
        rds.delete(REJECT_STREAM)
        rds.close()


def test_cli_set_show_unset(engine: Engine, cli: CliRunner) -> None:
    done = run(
        cli,
        "limits",
        "set",
        "strategies.Momentum_EQ.max_position_quantity",
        "1500",
        "--reason",
        "new desk cap",
        "--actor",
        "bob",
    )
    assert done.exit_code == 0, done.output
    shown = run(cli, "limits", "show", "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    (override,) = doc["overrides"]
    assert override["path"] == "strategies.Momentum_EQ.max_position_quantity"
    assert (override["value"], override["actor"], override["reason"]) == (
        "1500",
        "bob",
        "new desk cap",
    )
    assert override["set_at"]
    assert doc["effective"]["strategies"]["Momentum_EQ"]["max_position_quantity"] == "1500"
    assert doc["file"]["strategies"] == {}
    text = run(cli, "limits", "show")
    assert "by bob" in text.stdout and "new desk cap" in text.stdout
    gone = run(
        cli, "limits", "unset", "strategies.Momentum_EQ.max_position_quantity", "--reason", "ok"
    )
    assert gone.exit_code == 0, gone.output
    assert json.loads(run(cli, "limits", "show", "--json").stdout)["overrides"] == []
    audit = run(cli, "audit", "show", "--json")
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions == ["limits_set", "limits_unset"]


def test_cli_bad_value_is_a_message_and_exit_2(engine: Engine, cli: CliRunner) -> None:
    done = run(
        cli, "limits", "set", "defaults.strategy.max_active_intents", "many", "--reason", "x"
    )
    assert done.exit_code == 2
    assert "max_active_intents" in done.output and "nothing written" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    missing_reason = run(cli, "limits", "set", "account.min_margin_headroom", "0.2")
    assert missing_reason.exit_code == 2 and "--reason" in missing_reason.output
    assert _counts(engine) == (0, 0)


def test_epm_limits_file_is_the_file_overrides_merge_over(
    engine: Engine, epm_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from epm.settings import reset_settings_cache

    shipped = (Path(__file__).resolve().parents[2] / "epm" / "limits" / "default.toml").read_text()
    own = tmp_path / "desk.toml"
    own.write_text(
        shipped.replace("[instruments]\n", '[instruments]\nSPY = { max_order_quantity = "100" }\n')
    )
    epm_env.setenv("EPM_LIMITS_FILE", str(own))
    reset_settings_cache()
    try:
        assert instrument_limits(current_limits(), "SPY").max_order_quantity == Decimal("100")
        set_override(
            engine,
            path="instruments.SPY.max_order_notional",
            value="20000",
            actor="a",
            reason="r",
            now=NOW,
        )
        spy = instrument_limits(current_limits(engine), "SPY")
        assert (spy.max_order_quantity, spy.max_order_notional) == (
            Decimal("100"),
            Decimal("20000"),
        )
    finally:
        reset_settings_cache()
