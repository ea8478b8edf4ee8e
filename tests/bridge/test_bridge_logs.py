"""The bridge process (against the simulator) with `EPM_LOG_FILE` writes blueprint §12.2's line
for an order it sends: `order_submit` with the IB order id, epm's client order id, the client id,
the strategy and the order's fields as exact strings, one JSON object per line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import redis

from ibgateway_bridge import client_api
from ibgateway_bridge import commands as cmds
from tests.bridge.harness import SPY_SPEC, BridgeProcess, poll, sim_thread, wait_ready


def test_bridge_logs_order_submit_with_the_blueprint_fields(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "bridge.jsonl"
    with sim_thread() as sim:
        bridge = BridgeProcess(
            redis_url,
            sim.port,
            tmp_path / "bridge.out",
            EPM_LOG_FILE=str(log_file),
            EPM_LOG_FORMAT="json",
        ).start()
        try:
            wait_ready(r)
            order_id = client_api.allocate_order_id(r)
            placement = cmds.PlaceOrder(
                order_id=order_id,
                client_order_id=f"log-{order_id}",
                contract=SPY_SPEC,
                order=cmds.OrderSpec(action="BUY", quantity=Decimal(3), lmt_price=Decimal("1.10")),
                strategy="Momentum_EQ",
            )
            r.xadd(cmds.COMMAND_STREAM, cmds.encode_command(placement, datetime.now(UTC)))

            def submitted() -> list[dict[str, object]]:
                lines = [json.loads(x) for x in log_file.read_text().splitlines() if x.strip()]
                return [x for x in lines if x["event"] == "order_submit"]

            (line,) = poll(submitted, 60, interval=0.1, what="the bridge's order_submit line")
        finally:
            bridge.stop()
    assert line["order_id"] == order_id
    assert line["client_order_id"] == f"log-{order_id}"
    assert line["client_id"] == 1
    assert line["strategy"] == "Momentum_EQ"
    payload = line["payload"]
    assert isinstance(payload, dict)
    assert payload["action"] == "BUY"
    assert payload["quantity"] == "3" and payload["lmt_price"] == "1.10"
    assert line["logger"] == "ibgateway_bridge"
    assert line["level"] == "info" and str(line["timestamp"]).endswith("Z")
    # Everything else the bridge logged went to the file too, as JSON: its terminal got none.
    assert '"event"' not in (tmp_path / "bridge.out").read_text()
