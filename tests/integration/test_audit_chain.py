"""The hash-chained audit_log on SQLite and PostgreSQL: `insert_audit` chains every writer's row,
concurrent writers do not fork the chain, and `epm audit verify` names the first modified, deleted
or inserted row (exit 1) while rows from before the chain are "unchained" (exit 0)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from services.audit import record_audit, verify_audit
from store.audit import insert_audit
from store.db import write_transaction
from store.schema import audit_log

T0 = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def _write(engine: Engine, n: int, actor: str = "ops") -> None:
    for i in range(n):
        with write_transaction(engine) as conn:
            insert_audit(
                conn,
                ts=T0 + timedelta(seconds=i, microseconds=7),
                actor=actor,
                action="limits_set",
                target=f"limit:strategies.S{i}.max_active_intents",
                details={"value": Decimal("12.50"), "reason": "desk ask", "n": i, "at": T0},
            )


def _ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            int(r)
            for r in conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.id)).scalars()
        ]


def _cli_verify(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> tuple[int, dict[str, object]]:
    from epm.cli import _load_commands, app
    from epm.settings import reset_settings_cache

    monkeypatch.setenv("EPM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    reset_settings_cache()
    _load_commands()
    result = CliRunner().invoke(app, ["audit", "verify", "--json", *extra])
    reset_settings_cache()
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_chain_verifies_and_cli_exits_zero(engine: Engine, epm_env: pytest.MonkeyPatch) -> None:
    _write(engine, 5)
    report = verify_audit(engine)
    assert report.ok and report.chained == 5 and report.unchained == 0
    code, doc = _cli_verify(engine, epm_env)
    assert code == 0
    assert doc["ok"] is True and doc["chained"] == 5


def test_modified_row_is_named(engine: Engine, epm_env: pytest.MonkeyPatch) -> None:
    _write(engine, 5)
    victim = _ids(engine)[2]
    with write_transaction(engine) as conn:
        conn.execute(
            audit_log.update()
            .where(audit_log.c.id == victim)
            .values(
                details={"value": "9000000", "reason": "desk ask", "n": 2, "at": T0.isoformat()}
            )
        )
    code, doc = _cli_verify(engine, epm_env)
    assert code == 1
    assert doc["broken_row"] == victim
    assert "modified" in str(doc["reason"])


def test_deleted_row_is_named(engine: Engine, epm_env: pytest.MonkeyPatch) -> None:
    _write(engine, 5)
    ids = _ids(engine)
    with write_transaction(engine) as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id == ids[2]))
    code, doc = _cli_verify(engine, epm_env)
    assert code == 1
    assert doc["broken_row"] == ids[3]
    assert "deleted or inserted" in str(doc["reason"])


def test_inserted_row_is_named(engine: Engine, epm_env: pytest.MonkeyPatch) -> None:
    _write(engine, 3)
    with write_transaction(engine) as conn:
        head = conn.execute(
            sa.select(audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)
        ).scalar_one()
        # A row slipped in by hand, copying the head's hash as if it chained on.
        conn.execute(
            audit_log.insert().values(
                ts=T0,
                actor="intruder",
                action="resume",
                target="global",
                details={},
                prev_hash=head,
                row_hash=head,
            )
        )
    intruder = _ids(engine)[-1]
    code, doc = _cli_verify(engine, epm_env)
    assert code == 1
    assert doc["broken_row"] == intruder


def test_hashless_insert_after_the_chain_is_tampering(engine: Engine) -> None:
    _write(engine, 2)
    with write_transaction(engine) as conn:
        conn.execute(audit_log.insert().values(ts=T0, actor="x", action="y", target="z"))
    report = verify_audit(engine)
    assert report.broken is not None and report.broken.row_id == _ids(engine)[-1]


def test_rows_before_the_chain_are_unchained_not_tampering(
    engine: Engine, epm_env: pytest.MonkeyPatch
) -> None:
    with write_transaction(engine) as conn:
        for i in range(3):
            conn.execute(
                audit_log.insert().values(
                    ts=T0, actor="old", action="kill_switch", target="global", details={"i": str(i)}
                )
            )
    _write(engine, 2)
    code, doc = _cli_verify(engine, epm_env)
    assert code == 0
    assert (doc["unchained"], doc["chained"]) == (3, 2)


def test_record_audit_the_kill_switch_callback_chains(engine: Engine) -> None:
    """`epm kill-switch` / `epm resume` hand `services.audit.record_audit` to the bridge's kill
    switch as its deferred ledger write; its rows join the chain like any other."""
    url = engine.url.render_as_string(hide_password=False)
    _write(engine, 1)
    record_audit(url, "ops", "kill_switch", T0, {"reason": "drill", "purged": "3"})
    record_audit(url, "ops", "resume", T0 + timedelta(seconds=5), {"reason": "all clear"})
    report = verify_audit(engine)
    assert report.ok and report.chained == 3


def test_concurrent_writers_do_not_fork_the_chain(engine: Engine) -> None:
    """Eight threads, each its own connection and transaction, append at once: the chain stays a
    single line (each row's prev_hash is the row before it)."""
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            _write(engine, 10, actor=f"w{k}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = verify_audit(engine)
    assert report.ok, report.broken
    assert report.chained == 80
    with engine.connect() as conn:
        prevs = conn.execute(sa.select(audit_log.c.prev_hash)).scalars().all()
    assert len(set(prevs)) == 80  # no two rows chained onto the same head


def test_cli_expect_catches_rows_dropped_from_the_end(
    engine: Engine, epm_env: pytest.MonkeyPatch
) -> None:
    _write(engine, 4)
    code, doc = _cli_verify(engine, epm_env)
    noted = str(doc["head_hash"])
    with write_transaction(engine) as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id == _ids(engine)[-1]))
    assert _cli_verify(engine, epm_env)[0] == 0  # a shorter chain is still a chain ...
    code, doc = _cli_verify(engine, epm_env, "--expect", noted)
    assert code == 1  # ... but the head noted earlier is gone
    assert "deleted from the end" in str(doc["reason"])
