"""Use case: cache a contractDetails answer (newest answer wins), keyed by conId."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from models.ledger_reports import ContractReport
from services.ledger.result import LedgerResult
from store import contracts as contracts_repo


def record_contract(conn: Connection, report: ContractReport, now: datetime) -> LedgerResult:
    """Upsert the contract cache row for a contractDetails answer (newest answer wins)."""
    stored_at = contracts_repo.fetched_at(conn, report.con_id)
    if stored_at is not None and stored_at >= report.received_at:
        return LedgerResult(outcome="duplicate", note="a newer or equal answer is stored")
    contracts_repo.put(
        conn,
        report.con_id,
        {
            "symbol": report.symbol,
            "sec_type": report.sec_type,
            "expiry": report.expiry,
            "strike": report.strike,
            "right": report.right,
            "multiplier": report.multiplier,
            "exchange": report.exchange,
            "primary_exchange": report.primary_exchange,
            "currency": report.currency,
            "local_symbol": report.local_symbol,
            "trading_class": report.trading_class,
            "min_tick": report.min_tick,
            "trading_hours": report.trading_hours,
            "liquid_hours": report.liquid_hours,
            "time_zone_id": report.time_zone_id,
            "details": report.model_dump(mode="json", exclude={"received_at"}),
            "fetched_at": report.received_at,
        },
    )
    return LedgerResult(outcome="recorded", applied=True)
