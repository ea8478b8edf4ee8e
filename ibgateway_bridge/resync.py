"""What a session does after every (re)connect before it may send: the resync.

Client 1 (orders): ids synced to `nextValidId`, then the venue's open orders, the day's
executions (fills made while away reach the ledger, idempotent on exec_id) and its completed
orders, which rebuild what the bridge knows of its orders (`VenueOrders`); after a complete
resync, placements whose bytes died with the old connection are sent again and unanswered cancels
of orders still working are repeated. Client 2 (account): positions, account summary, P&L and the
market-data lines are subscribed again (on the same socket after 1101/1102 the old streams are
cancelled first).
"""

from __future__ import annotations

from ibapi.execution import ExecutionFilter

from ibgateway_bridge import commands as cmds
from ibgateway_bridge.connection import IBSession
from ibgateway_bridge.parts import BridgeParts, log

ACCOUNT_TAGS = "NetLiquidation,TotalCashValue,BuyingPower,AvailableFunds,ExcessLiquidity,"
ACCOUNT_TAGS += "InitMarginReq,MaintMarginReq,GrossPositionValue"
ORDER_LISTS_ENDS = ("open_order_end", "exec_details_end", "completed_orders_end")
# An older gateway may never answer reqCompletedOrders; waiting longer would only delay trading.
COMPLETED_ORDERS_WAIT_S = 3.0


class Resync:
    def __init__(self, parts: BridgeParts) -> None:
        self._parts = parts
        self._pnl_single: set[tuple[str, int]] = set()
        # Streams client 2 opened on its current socket (kind, req_id), and which socket.
        self._account_subs: list[tuple[str, int]] = []
        self._account_subs_on = 0

    def on_connected(self, session: IBSession) -> bool:
        """Resync after a (re)connect; True when the session may trade."""
        if session.client is None:
            return False
        if session is self._parts.orders:
            return self._orders(session)
        self._account(session)
        return True

    def _orders(self, session: IBSession) -> bool:
        parts = self._parts
        client = session.client
        if client is None:
            return False
        if session.next_valid_id is not None:
            last = parts.allocator.sync(session.next_valid_id)
            log.info("order_ids_synced", next_valid_id=session.next_valid_id, last_id=last)
        parts.venue.begin_resync()
        for name in ORDER_LISTS_ENDS:
            session.event(name).clear()
        client.reqOpenOrders()
        client.reqExecutions(parts.next_req_id(), ExecutionFilter())
        client.reqCompletedOrders(True)
        timeout = parts.config.resync_timeout_s
        if not session.wait_event("open_order_end", timeout):
            return False
        if not session.wait_event("exec_details_end", timeout):
            return False
        # Without completed orders the resync is not complete, and no placement whose fate is
        # unknown is sent on its word.
        complete = session.wait_event("completed_orders_end", min(timeout, COMPLETED_ORDERS_WAIT_S))
        parts.venue.end_resync(complete)
        self._settle(session)
        log.info("orders_resynced", complete=complete)
        return True

    def _settle(self, session: IBSession) -> None:
        """Placements sent on an earlier connection that the venue does not know lost their
        bytes with it: sent again (same id, same stream entry). Cancels of orders the venue still
        shows working are repeated. Only on a complete resync: never resend on doubt."""
        venue = self._parts.venue
        if not venue.resync_complete:
            return
        settlement = venue.settle()
        for env in (*settlement.lost_places, *settlement.repeat_cancels):
            log.warning(
                "unanswered_command_repeated", stream_id=env.stream_id, kind=env.command.type
            )
            session.backlog.put(env, cmds.priority_of(env.command), lane=cmds.lane_of(env.command))

    def _account(self, session: IBSession) -> None:
        parts = self._parts
        client = session.client
        if client is None:
            return
        if self._account_subs_on == session.connection_number:
            # 1101/1102 on the same socket: drop what it already streams before asking again.
            client.cancelPositions()
            for kind, req_id in self._account_subs:
                if kind == "summary":
                    client.cancelAccountSummary(req_id)
                elif kind == "pnl":
                    client.cancelPnL(req_id)
                else:
                    client.cancelPnLSingle(req_id)
        self._account_subs = []
        self._account_subs_on = session.connection_number
        self._pnl_single.clear()
        parts.md.resubscribe_all(client)
        client.reqPositions()
        summary_id = parts.next_req_id()
        self._account_subs.append(("summary", summary_id))
        client.reqAccountSummary(summary_id, "All", ACCOUNT_TAGS)
        account = parts.settings.ib_account or (session.accounts[0] if session.accounts else "")
        if account:
            req_id = parts.next_req_id()
            self._account_subs.append(("pnl", req_id))
            parts.outbox.register_pnl_request(req_id, account, None)
            client.reqPnL(req_id, account, "")

    def ensure_pnl_single(self, account: str, con_id: int) -> None:
        """Subscribe reqPnLSingle for a position the first time it shows up on this connection."""
        parts = self._parts
        session = parts.account
        if session is None or session.client is None or (account, con_id) in self._pnl_single:
            return
        self._pnl_single.add((account, con_id))
        req_id = parts.next_req_id()
        self._account_subs.append(("pnl_single", req_id))
        parts.outbox.register_pnl_request(req_id, account, con_id)
        session.client.reqPnLSingle(req_id, account, "", con_id)
