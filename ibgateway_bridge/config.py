"""Bridge-only tunables (`EPM_BRIDGE_*`) and the Redis keys the bridge publishes its state under."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_KEY = "ib:bridge:state"
FARMS_KEY = "ib:bridge:farms"


class BridgeConfig(BaseSettings):
    """Bridge-only tunables (`EPM_BRIDGE_*`); connection ids and pacing come from `Settings`."""

    model_config = SettingsConfigDict(env_prefix="EPM_BRIDGE_", frozen=True, extra="ignore")

    lease_ttl_ms: int = Field(default=5000, ge=300)
    # A restarted bridge (after kill -9) finds its predecessor's lease until it expires; a
    # supervisor can let it wait that long instead of failing. 0 = refuse at once.
    lease_wait_s: float = Field(default=0.0, ge=0)
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    resync_timeout_s: float = Field(default=15.0, gt=0)
    # Error 326 policy: wait this long, retry the same id at most this often (-1 = forever).
    id_in_use_retry_s: float = Field(default=30.0, ge=0)
    id_in_use_max_retries: int = Field(default=10, ge=-1)
    md_line_limit: int = Field(default=100, ge=1)
    account_session: bool = True
    # Prometheus exposition on 127.0.0.1 (backlog, pacer and send waits, publish latency);
    # None = off, 0 = an OS-chosen port (written to ib:bridge:state as metrics_port).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    send_extra_tasks: bool = True
    batch_max: int = Field(default=200, ge=1)
    # Callbacks per `record_batch` message for bursts; 1 = one task per callback always.
    batch_items: int = Field(default=50, ge=1)
