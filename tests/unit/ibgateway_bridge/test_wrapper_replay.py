"""Recorded IB sessions (`tests/fixtures/ib/*.json`) replayed into the bridge's `BridgeWrapper`.

Each fixture is a real callback sequence the official ibapi client decoded from the simulator
(9.81, and 10.x for the `.ibapi10` files). The callbacks are rebuilt as ibapi objects and fed to
the wrapper as IB's decoder thread would; what it emits is checked against an oracle written
here from the fixture's raw JSON alone: one message per callback, of the right kind, with the
ids (`ib_order_id`, perm id, orderRef, execId), statuses and exact Decimal quantities the
callback carried. Then the real outbox must turn the data messages into ledger task payloads
that the ledger's own models accept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ibgateway_bridge.wrapper import Message
from models.ledger_reports import parse_report
from services.ledger.callbacks import WRITERS
from tests.fixtures.ib import Recording, fixture_names, load
from tests.unit.ibgateway_bridge.replay import ledger_callbacks, replay_wrapper

FIXTURES = fixture_names()
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_DECIMAL = str(2**127 - 1)
# The farm notices every logon gets: the connection manager's matter, never the ledger's.
FARM_NOTICES = {2104, 2106, 2158}
SIDES = {"BOT": "BUY", "SLD": "SELL"}

Expected = tuple[str, dict[str, Any]]


def _scenario(name: str) -> str:
    return name.split(".", 1)[0]


def _dec(raw: Any) -> Decimal | None:
    """A recorded number as the exact Decimal IB sent; None for IB's unset markers."""
    if raw is None or raw == UNSET_DECIMAL:
        return None
    if isinstance(raw, float) and raw >= UNSET_DOUBLE:
        return None
    return Decimal(str(raw))


def _fields(value: dict[str, Any]) -> dict[str, Any]:
    assert set(value) == {"ibapi", "fields"}, value
    fields: dict[str, Any] = value["fields"]
    return fields


def _exec_time(raw: str) -> str:
    """The sim writes execution times as "yyyymmdd hh:mm:ss UTC"."""
    wall, zone = raw.rsplit(" ", 1)
    assert zone == "UTC", raw
    return datetime.strptime(wall, "%Y%m%d %H:%M:%S").replace(tzinfo=UTC).isoformat()


def _report_commission(report: dict[str, Any]) -> Any:
    return report["commission"] if "commission" in report else report["commissionAndFees"]


def expected_messages(rec: Recording) -> tuple[list[Expected], list[Expected]]:
    """(data, control) messages each recorded callback must produce, from the raw JSON only."""
    data: list[Expected] = []
    control: list[Expected] = []
    for event in rec.callbacks():
        a = event.args
        if event.name == "openOrder":
            order, contract = _fields(a["order"]), _fields(a["contract"])
            state = _fields(a["orderState"])
            fields = {
                "ib_order_id": a["orderId"],
                "order_ref": order["orderRef"],
                "perm_id": order["permId"],
                "client_id": order["clientId"],
                "con_id": contract["conId"],
                "symbol": contract["symbol"],
                "action": order["action"],
                "order_type": order["orderType"],
                "tif": order["tif"],
                "ib_status": state["status"],
                "total_quantity": _dec(order["totalQuantity"]),
                "lmt_price": _dec(order["lmtPrice"]),
            }
            data.append(("open_order", fields))
            control.append(("order_seen", _seen(fields)))
        elif event.name == "orderStatus":
            fields = {
                "ib_order_id": a["orderId"],
                "ib_status": a["status"],
                "perm_id": a["permId"],
                "client_id": a["clientId"],
                "filled": _dec(a["filled"]),
                "remaining": _dec(a["remaining"]),
                "avg_fill_price": _dec(a["avgFillPrice"]),
                "last_fill_price": _dec(a["lastFillPrice"]),
            }
            data.append(("order_status", fields))
            control.append(("order_seen", {**_seen(fields), "order_ref": None}))
        elif event.name == "execDetails":
            ex, contract = _fields(a["execution"]), _fields(a["contract"])
            fields = {
                "exec_id": ex["execId"],
                "req_id": a["reqId"],
                "ib_order_id": ex["orderId"],
                "order_ref": ex["orderRef"],
                "perm_id": ex["permId"],
                "client_id": ex["clientId"],
                "con_id": contract["conId"],
                "symbol": contract["symbol"],
                "side": ex["side"],
                "action": SIDES[ex["side"]],
                "account": ex["acctNumber"],
                "shares": _dec(ex["shares"]),
                "price": _dec(ex["price"]),
                "cum_qty": _dec(ex["cumQty"]),
                "avg_price": _dec(ex["avgPrice"]),
                "time": _exec_time(ex["time"]),
                "time_zone_source": "named",
            }
            data.append(("execution", fields))
            control.append(("order_seen", {**_seen(fields), "ib_status": None}))
        elif event.name in ("commissionReport", "commissionAndFeesReport"):
            report = _fields(next(iter(a.values())))
            fields = {
                "exec_id": report["execId"],
                "client_id": rec.client_id,
                "commission": _dec(_report_commission(report)),
                "currency": report["currency"],
                "realized_pnl": _dec(report["realizedPNL"]),
            }
            data.append(("commission", fields))
        elif event.name == "error":
            fields = {
                "ib_order_id": a["reqId"],
                "client_id": rec.client_id,
                "code": a["errorCode"],
                "message": a["errorString"],
            }
            if a["reqId"] > 0:
                data.append(("error", fields))
                control.append(("error", fields))
            else:
                assert a["errorCode"] in FARM_NOTICES, f"unexpected notice in the fixture: {a}"
                control.append(("error", fields))
        elif event.name == "nextValidId":
            control.append(("next_valid_id", {"ib_order_id": a["orderId"]}))
        elif event.name == "managedAccounts":
            control.append(("managed_accounts", {"accounts": a["accountsList"].split(",")}))
        elif event.name == "completedOrder":
            # Only the connection manager reads these (matched by orderRef: ibapi 9.81's
            # completedOrder carries no order id, it stays 0).
            order, state = _fields(a["order"]), _fields(a["orderState"])
            fields = {
                "ib_order_id": order["orderId"],
                "order_ref": order["orderRef"],
                "perm_id": order["permId"],
                "ib_status": state["status"],
                "filled_quantity": _dec(order["filledQuantity"]),
                "total_quantity": _dec(order["totalQuantity"]),
            }
            control.append(("completed_order", fields))
        elif event.name in ("openOrderEnd", "completedOrdersEnd"):
            kind = "open_order_end" if event.name == "openOrderEnd" else "completed_orders_end"
            control.append((kind, {}))
        elif event.name == "execDetailsEnd":
            control.append(("exec_details_end", {"req_id": a["reqId"]}))
        elif event.name == "connectionClosed":
            control.append(("connection_closed", {}))
        elif event.name != "connectAck":  # ibapi's own; the wrapper leaves it to EWrapper
            raise AssertionError(f"{rec.name}: no oracle for callback {event.name}: extend it")
    return data, control


def _seen(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: fields.get(k) for k in ("ib_order_id", "order_ref", "perm_id", "ib_status")}


def _check(where: str, got: list[Message], want: list[Expected]) -> None:
    assert [m.kind for m in got] == [kind for kind, _ in want], where
    for i, (msg, (kind, fields)) in enumerate(zip(got, want, strict=True)):
        for key, expected in fields.items():
            actual = msg.data.get(key)
            label = f"{where} #{i} {kind}.{key}"
            if isinstance(expected, Decimal):
                # Exact decimals travel as strings, never floats.
                assert isinstance(actual, str), f"{label}: {actual!r} is not a decimal string"
                assert Decimal(actual) == expected, f"{label}: {actual} != {expected}"
            else:
                assert actual == expected, f"{label}: {actual!r} != {expected!r}"


# ------------------------------------------------------------------------------------------------


def test_fixtures_were_recorded() -> None:
    """Both clients' recordings of every scenario are here (the recorder writes them)."""
    scenarios = {"market_buy_fill", "limit_partial_then_cancel", "reject", "modify_filled_104"}
    assert {n for n in FIXTURES if "." not in n} == scenarios
    assert {_scenario(n) for n in FIXTURES if n.endswith(".ibapi10")} == scenarios
    for name in FIXTURES:
        rec = load(name)
        assert rec.client_id == 1
        assert rec.ibapi_version.startswith("10." if name.endswith(".ibapi10") else "9.81")
        assert rec.requests("placeOrder") and rec.callbacks("nextValidId")


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_shows_its_case(name: str) -> None:
    """Each recording still holds the sequence it was made for (guards a re-recording)."""
    rec = load(name)
    oid = rec.requests("placeOrder")[0].args["orderId"]
    statuses = [e.args["status"] for e in rec.callbacks("orderStatus")]
    codes = [e.args["errorCode"] for e in rec.callbacks("error") if e.args["reqId"] == oid]
    executions = rec.callbacks("execDetails")
    exec_ids = [_fields(e.args["execution"])["execId"] for e in executions]
    shares = {
        _fields(e.args["execution"])["execId"]: _dec(_fields(e.args["execution"])["shares"])
        for e in executions
    }
    total = _dec(_fields(rec.requests("placeOrder")[0].args["order"])["totalQuantity"])
    assert total is not None
    filled = sum((s for s in shares.values() if s is not None), Decimal(0))
    completed = [_fields(e.args["orderState"])["status"] for e in rec.callbacks("completedOrder")]
    case = _scenario(name)
    if case in ("market_buy_fill", "limit_partial_then_cancel"):
        # The live executions, then the same ones again from the resync's reqExecutions.
        assert len(exec_ids) == 2 * len(shares)
        assert {e.args["reqId"] for e in executions} == {-1, 9001}
        assert rec.callbacks("openOrderEnd") and rec.callbacks("completedOrdersEnd")
    if case == "market_buy_fill":
        # Several executions at several prices.
        assert statuses[-1] == "Filled" and codes == [] and completed == ["Filled"]
        assert len(shares) >= 2 and filled == total
        assert len({_fields(e.args["execution"])["price"] for e in executions}) >= 2
    elif case == "limit_partial_then_cancel":
        assert statuses[-1] == "Cancelled" and codes == [202] and completed == ["Cancelled"]
        assert 0 < filled < total
    elif case == "reject":
        assert statuses == ["Cancelled"] and codes == [201]
        assert not exec_ids and not rec.callbacks("openOrder")
    elif case == "modify_filled_104":
        assert len(rec.requests("placeOrder")) == 2 and codes == [104]
        assert "Filled" in statuses and filled == total
    else:
        raise AssertionError(f"unknown scenario {case}")


@pytest.mark.parametrize("name", FIXTURES)
def test_wrapper_emits_what_each_recorded_callback_says(name: str) -> None:
    rec = load(name)
    data, control = replay_wrapper(rec)
    want_data, want_control = expected_messages(rec)
    _check(f"{name} data", data, want_data)
    _check(f"{name} control", control, want_control)
    assert all(m.client_id == rec.client_id for m in data + control)
    stamps = [m.received_at for m in data]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


@pytest.mark.parametrize("name", FIXTURES)
def test_outbox_turns_every_data_message_into_a_valid_ledger_payload(name: str) -> None:
    rec = load(name)
    data, _control = replay_wrapper(rec)
    calls = ledger_callbacks(rec, data)
    kinds = {"error": "order_error"}
    assert [kind for kind, _ in calls] == [kinds.get(m.kind, m.kind) for m in data]
    assert [payload for _, payload in calls] == [m.data for m in data]
    for kind, payload in calls:
        model, _writer = WRITERS[kind]
        report = parse_report(model, payload)  # raises ReportError on a payload it refuses
        assert report.ib_order_id if kind != "commission" else report.exec_id


def _is_ibapi10(name: str) -> bool:
    return name.endswith(".ibapi10")


def _estimate_cases() -> list[Any]:
    cases: list[Any] = []
    for name in FIXTURES:
        rec = load(name)
        views = [_fields(e.args["orderState"]) for e in rec.callbacks("openOrder")]
        if not any(_dec(v.get("commission", v.get("commissionAndFees"))) for v in views):
            continue
        cases.append(pytest.param(name))
    return cases


@pytest.mark.parametrize("name", _estimate_cases())
def test_open_order_carries_the_venue_commission_estimate(name: str) -> None:
    """The openOrder's OrderState commission (the venue's figure once filled) reaches the
    open_order payload, under ibapi 10.x too (where it is `commissionAndFees`; these replays
    found the bridge reading only the 9.81 name)."""
    rec = load(name)
    data, _control = replay_wrapper(rec)
    views = [m for m in data if m.kind == "open_order"]
    states = [_fields(e.args["orderState"]) for e in rec.callbacks("openOrder")]
    assert len(views) == len(states)
    for msg, state in zip(views, states, strict=True):
        want = _dec(state.get("commission", state.get("commissionAndFees")))
        got = msg.data["commission"]
        assert (None if got is None else Decimal(got)) == want, (msg.data["ib_status"], got)
