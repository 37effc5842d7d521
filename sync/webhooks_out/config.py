"""The outbound webhooks' knobs (from settings.Settings, via sync.config.SyncConfig)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutConfig:
    timeout_seconds: float = 10.0  # the whole attempt, from connect to the last byte read
    connect_timeout_seconds: float = 3.0
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 3600.0
    give_up_after_seconds: float = 86400.0  # a day of retries, then FAILED
    sweep_batch: int = 200
    sweep_hold_seconds: float = 60.0

    @property
    def lease_seconds(self) -> float:
        """An attempt's hold on its row: past every timeout, with room."""
        return self.timeout_seconds * 2 + 5
