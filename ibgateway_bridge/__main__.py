"""`python -m ibgateway_bridge` (and `epm bridge`): run the bridge until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import sys
import threading

from epm.logging import LogConfigError, configure_logging, get_logger


def main() -> int:
    """Start the bridge; exit 3 when another bridge holds the lease, 2 on a bad log setting."""
    try:
        configure_logging()
    except LogConfigError as e:
        print(f"epm bridge: {e}", file=sys.stderr)
        return 2
    log = get_logger("ibgateway_bridge")
    from celery import Celery

    from epm.redis_conn import get_redis
    from epm.settings import get_settings
    from ibgateway_bridge.lease import LeaseHeldError
    from ibgateway_bridge.runtime import Bridge

    # The bridge only publishes ledger tasks, by name: epm's Celery settings, none of its tasks.
    publisher = Celery("epm-bridge")
    publisher.config_from_object("celeryconfig")
    bridge = Bridge(get_settings(), get_redis(), publisher)
    try:
        bridge.start()
    except LeaseHeldError as e:
        log.error("bridge_refused", reason=str(e))
        print(f"epm bridge: {e}", file=sys.stderr)
        return 3
    stopping = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stopping.set()
        bridge.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bridge.wait()
    bridge.stop()
    log.info("bridge_stopped", by_signal=stopping.is_set())
    return 0 if stopping.is_set() else 4


if __name__ == "__main__":
    sys.exit(main())
