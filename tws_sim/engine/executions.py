"""The day's executions: each fill booked into the paper account, logged and journaled, and
corrections that replace an execution (the account is rebooked from the effective ones).

The execution list is what reqExecutions answers from and what a restart rebuilds the account
from, so booking, correcting and rebooking live together: they must agree on what counts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from tws_sim.engine.account import Account
from tws_sim.engine.core import ExecRecord, VenueCore
from tws_sim.engine.execids import corrected_id
from tws_sim.engine.orders import WorkingOrder
from tws_sim.engine.persistence import encode_commission, encode_execution
from tws_sim.types import (
    Commissioned,
    CommissionReport,
    Executed,
    Execution,
    Instrument,
    PositionChanged,
    SecType,
    VenueEvent,
)

ZERO = Decimal(0)


class Executions(VenueCore):
    """Booking, correcting and rebooking executions (see the module docstring)."""

    # ---------------------------------------------------------------------------------------------
    # Booking

    def _book(
        self,
        order: WorkingOrder,
        con_id: int,
        symbol: str,
        sec_type: SecType,
        multiplier: int,
        buy: bool,
        shares: Decimal,
        price: Decimal,
        cum_qty: Decimal,
        avg_price: Decimal,
        commission: Decimal,
        now: datetime,
        out: list[VenueEvent],
        tail: list[VenueEvent],
        liquidity: int,
        exchange: str,
        bag: bool = False,
    ) -> Execution:
        """Create, book and log one execution: execDetails goes to `out`, its commission and
        position to `tail`, which the caller appends after the orderStatus (IB's order)."""
        req = order.req
        ex = Execution(
            exec_id=self._exec_ids.next_id(self._account_id, now),
            order_id=req.order_id,
            client_id=req.client_id,
            perm_id=order.perm_id,
            account=self._account_id,
            con_id=con_id,
            symbol=symbol,
            sec_type=sec_type,
            side="BOT" if buy else "SLD",
            shares=shares,
            price=price,
            cum_qty=cum_qty,
            avg_price=avg_price,
            time=now,
            exchange=exchange,
            order_ref=req.order_ref,
            last_liquidity=liquidity,
        )
        realized = None
        if not bag:
            realized = self._account.apply_fill(con_id, multiplier, buy, shares, price, commission)
            self._volume[sec_type] = self._volume.get(sec_type, ZERO) + shares
        report = CommissionReport(ex.exec_id, commission, "USD", realized)
        self._add_exec(ExecRecord(ex, report, 0 if bag else multiplier))
        if self._log is not None:
            self._log.execution(ex)
            self._log.commission(ex, commission, realized)
        out.append(Executed(ex))
        tail.append(Commissioned(req.client_id, report, self._commission_time(now)))
        if not bag:
            pos = self._account.positions[con_id]
            tail.append(PositionChanged(self._account_id, con_id, pos.qty, pos.avg_cost))
        self._exec_seq += 1
        return ex

    def _commission_time(self, now: datetime) -> datetime | None:
        """When a commission report is delivered: None (with its execution), or later inside a
        scenario's commission-delay window."""
        delay = self._rules.commission_delay(now)
        return now + timedelta(seconds=delay) if delay > 0 else None

    def _book_settlement(
        self,
        kind: str,
        inst: Instrument,
        buy: bool,
        shares: Decimal,
        price: Decimal,
        ref: str,
        now: datetime,
        out: list[VenueEvent],
    ) -> None:
        """Book what an expiring option does to the account (`kind` exercise, assignment or
        expiration; `ref` tells its records apart): into the positions and cash, the journal and
        the exec log, no commission, and out as the position's new state only; IB sends no
        execution for it (no order traded)."""
        ex = Execution(
            exec_id=ref,
            order_id=0,
            client_id=0,
            perm_id=0,
            account=self._account_id,
            con_id=inst.con_id,
            symbol=inst.symbol,
            sec_type=inst.sec_type,
            side="BOT" if buy else "SLD",
            shares=shares,
            price=price,
            cum_qty=shares,
            avg_price=price,
            time=now,
            exchange="",
            order_ref=kind,
        )
        realized = self._account.apply_fill(inst.con_id, inst.multiplier, buy, shares, price, ZERO)
        report = CommissionReport(ex.exec_id, ZERO, "USD", realized)
        self._add_exec(ExecRecord(ex, report, inst.multiplier, kind=kind))
        if self._log is not None:
            self._log.execution(ex, kind=kind)
        pos = self._account.positions[inst.con_id]
        out.append(PositionChanged(self._account_id, inst.con_id, pos.qty, pos.avg_cost))

    def _add_exec(self, rec: ExecRecord) -> None:
        """Record an execution (indexed by exec id, for corrections) and append it to the execution
        journal at once; the snapshot written before the call returns counts the line."""
        self._exec_index[rec.execution.exec_id] = len(self._execs)
        self._execs.append(rec)
        self._dirty = True
        if self._journal is not None:
            self._journal.append(
                {
                    "execution": encode_execution(rec.execution),
                    "commission": encode_commission(rec.commission),
                    "multiplier": rec.multiplier,
                    "kind": rec.kind,
                }
            )

    # ---------------------------------------------------------------------------------------------
    # Corrections

    def _scheduled_corrections(self, ex: Execution, now: datetime, out: list[VenueEvent]) -> None:
        """Scenario corrections: count matching executions per rule, correct the nth."""
        if not self._rules.corrections:
            return
        for i, rule in enumerate(self._rules.corrections):
            if rule.symbol and rule.symbol != ex.symbol:
                continue
            if rule.start is not None and ex.time < rule.start:
                continue
            self._corr_counts[i] += 1
            if self._corr_counts[i] == rule.nth:
                self._correct(ex.exec_id, now, ex.price + rule.price_delta, rule.shares, out)

    def _correct(
        self,
        exec_id: str,
        now: datetime,
        price: Decimal | None,
        shares: Decimal | None,
        out: list[VenueEvent],
    ) -> None:
        """Replace an execution by its correction (exec id .01 → .02): the order's cumulative
        quantity and average price follow, the account is rebooked from the effective executions,
        and the client gets execDetails, orderStatus, a commission report and the position again,
        as IB sends a correction."""
        idx = self._exec_index.get(exec_id)
        if idx is None or self._execs[idx].superseded:
            raise KeyError(f"no effective execution {exec_id!r}")
        rec = self._execs[idx]
        old = rec.execution
        new_price = old.price if price is None else price
        new_shares = old.shares if shares is None else shares
        new = replace(
            old,
            exec_id=corrected_id(old.exec_id),
            price=new_price,
            shares=new_shares,
            is_correction_of=old.exec_id,
        )
        order = self._orders.get((old.client_id, old.order_id))
        # A combo's own fill is its BAG execution; a leg correction leaves the combo's price alone.
        if order is not None and order.is_combo == (old.sec_type == SecType.BAG):
            order.notional += new_shares * new_price - old.shares * old.price
            order.filled += new_shares - old.shares
            if order.filled:
                order.last_fill_price = new_price
            new = replace(new, cum_qty=order.filled, avg_price=order.avg_price)
        old_comm = rec.commission
        comm = old_comm.commission if old_comm is not None else ZERO
        rec.superseded = True
        new_rec = ExecRecord(new, CommissionReport(new.exec_id, comm, "USD", None), rec.multiplier)
        self._execs.append(new_rec)
        self._rebook()
        self._execs.pop()
        realized = self._realized_of(new.exec_id)
        new_rec.commission = CommissionReport(new.exec_id, comm, "USD", realized)
        self._add_exec(new_rec)
        if self._log is not None:
            self._log.execution(new, kind="correction")
            self._log.commission(new, comm, realized)
        out.append(Executed(new))
        if order is not None:
            self._emit(order, now, out, open_order=False)
        out.append(Commissioned(old.client_id, new_rec.commission, self._commission_time(now)))
        if rec.multiplier:
            pos = self._account.positions[new.con_id]
            out.append(PositionChanged(self._account_id, new.con_id, pos.qty, pos.avg_cost))

    def _rebook(self) -> None:
        """Rebuild the account from the effective executions (after a correction or a restart)."""
        self._account = Account(self._rules.starting_cash)
        self._realized_cache = {}
        volume: dict[SecType, Decimal] = {}
        for rec in self._execs:
            if rec.superseded or not rec.multiplier:
                continue
            ex = rec.execution
            comm = rec.commission.commission if rec.commission is not None else ZERO
            self._realized_cache[ex.exec_id] = self._account.apply_fill(
                ex.con_id, rec.multiplier, ex.side == "BOT", ex.shares, ex.price, comm
            )
            if not rec.kind:  # exercises and expiries are not traded volume
                volume[ex.sec_type] = volume.get(ex.sec_type, ZERO) + ex.shares
        self._volume = volume

    def _realized_of(self, exec_id: str) -> Decimal | None:
        """The realized P&L the last rebook gave an execution (its commission report carries it)."""
        return self._realized_cache.get(exec_id)
