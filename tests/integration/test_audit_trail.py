"""The audit trail an intent leaves, on SQLite and PostgreSQL: intake's decision with the numbers
the gates compared, each order command (place, modify, cancel) in the transaction that records
it, all on one verified chain."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.audit import verify_audit
from services.orders.plan_intent import plan_admitted
from services.orders.reprice import reprice_pegged
from services.orders.send_due import send_due
from store.schema import audit_log
from tasks.orders import BridgeVenue
from tests.integration.test_orders_path import (
    T0,
    admit,
    children,
    describe_aapl,
    quote,
    r,  # noqa: F401 - the Redis fixture
)


def trail(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(audit_log).order_by(audit_log.c.id)))


def test_intake_audits_admission_with_caps_and_refusal_with_numbers(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
) -> None:
    describe_aapl(engine)
    admit(engine, r, urgency="Normal")
    from services.intake import process_submission

    refused = process_submission(
        {
            "signal_id": "sig-huge",
            "strategy": "Momentum_EQ",
            "instrument": "AAPL",
            "side": "BUY",
            "quantity": "9000000",
            "urgency": "Immediate",
            "time_in_force": "DAY",
        },
        engine=engine,
        redis_client=r,
        now=T0,
        max_active=lambda _s: 10,
    )
    assert refused["reason"] == "RISK_LIMIT"
    admitted, rejected = trail(engine)
    assert (admitted.actor, admitted.action, admitted.target) == (
        "intake",
        "intent_admitted",
        "intent:sig-1",
    )
    assert admitted.details["limits"]["max_order_quantity"] == "1000000"
    assert admitted.details["quantity"] == "300"
    assert (rejected.action, rejected.target) == ("intent_refused", "intent:sig-huge")
    assert rejected.details["reason"] == "RISK_LIMIT"
    assert "9000000" in rejected.details["numbers"].values()
    assert "1000000" in rejected.details["numbers"].values()
    # Resubmitting is a duplicate: nothing new is decided, so nothing new is audited.
    process_submission(
        {
            "signal_id": "sig-huge",
            "strategy": "Momentum_EQ",
            "instrument": "AAPL",
            "side": "BUY",
            "quantity": "9000000",
            "urgency": "Immediate",
            "time_in_force": "DAY",
        },
        engine=engine,
        redis_client=r,
        now=T0,
        max_active=lambda _s: 10,
    )
    assert len(trail(engine)) == 2
    assert verify_audit(engine).ok


def test_place_and_modify_are_audited(engine: Engine, r: redis.Redis) -> None:  # noqa: F811
    describe_aapl(engine)
    intent_id = admit(engine, r, urgency="Normal")
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    peg = children(engine, intent_id)[0]
    later = T0 + timedelta(seconds=3)
    quote(r, later, bid="200.10", ask="200.12")
    assert reprice_pegged(engine, venue, later) == [peg.client_order_id]
    rows = trail(engine)
    assert [a.action for a in rows] == ["intent_admitted", "order_place", "order_modify"]
    place, modify = rows[1], rows[2]
    assert place.target == modify.target == f"order:{peg.client_order_id}"
    assert (place.details["ib_order_id"], place.details["lmt_price"]) == (peg.ib_order_id, "200.01")
    assert (modify.details["version"], modify.details["lmt_price"]) == (1, "200.11")
    report = verify_audit(engine)
    assert report.ok and report.chained == 3


def test_cancel_of_an_ended_intents_working_child_is_audited(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
) -> None:
    describe_aapl(engine)
    until = T0 + timedelta(minutes=1)
    intent_id = admit(engine, r, urgency="Normal", time_in_force="GTD", good_till=until.isoformat())
    venue = BridgeVenue(engine, r, client_id=1)
    plan_admitted(engine, venue, intent_id, client_id=1, now=T0)
    quote(r, T0)
    send_due(engine, venue, T0)
    peg = children(engine, intent_id)[0]
    quote(r, until)
    assert send_due(engine, venue, until).finished_intents == [intent_id]
    cancel = trail(engine)[-1]
    assert (cancel.action, cancel.target) == ("order_cancel", f"order:ib:{peg.ib_order_id}")
    assert verify_audit(engine).ok


def test_epm_cancel_is_audited_as_an_operator_action(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    redis_url: str,
    epm_env: Any,
) -> None:
    from typer.testing import CliRunner

    from epm.cli import _load_commands, app
    from epm.redis_conn import reset_redis_cache
    from epm.settings import reset_settings_cache

    epm_env.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    epm_env.setenv("EPM_REDIS_URL", redis_url)
    epm_env.setenv("USER", "desk-op")
    reset_settings_cache()
    reset_redis_cache()
    _load_commands()
    done = CliRunner().invoke(app, ["cancel", "4242"])
    assert done.exit_code == 0, done.output
    (row,) = trail(engine)
    assert (row.actor, row.action, row.target) == ("desk-op", "order_cancel", "order:ib:4242")
    assert row.details["stream_id"] in done.output
    assert verify_audit(engine).ok
