"""Alert thresholds from the environment (`EPM_ALERT_*`); the defaults are the blueprint's."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.alerts import AlertThresholds


class AlertConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EPM_ALERT_", frozen=True, extra="ignore")

    urgent_unfilled_s: float = Field(default=120.0, gt=0)
    slippage_bps: Decimal = Field(default=Decimal(25))
    position_contracts: Decimal = Field(default=Decimal(5), ge=0)
    heartbeat_stale_s: float = Field(default=15.0, gt=0)
    # How long an intent's slippage result stays a condition (and so is not published twice).
    slippage_window_s: float = Field(default=3600.0, gt=0)

    def thresholds(self) -> AlertThresholds:
        return AlertThresholds(
            urgent_unfilled_s=self.urgent_unfilled_s,
            slippage_bps=self.slippage_bps,
            position_contracts=self.position_contracts,
            heartbeat_stale_s=self.heartbeat_stale_s,
        )
