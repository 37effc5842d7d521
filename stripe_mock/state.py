"""Everything the mock remembers, in one object that `POST /_mock/reset` can clear."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .faults import FaultPlan, Rule
from .idempotency import IdempotencyRegistry
from .persist import Journal
from .ratelimit import SlidingWindow
from .stats import Stats
from .store import Store
from .webhooks import Deliveries, WebhookSettings


@dataclass
class Defaults:
    """Start-up settings that a reset returns to."""

    idempotency_ttl_seconds: float
    seed: int | None
    search_lag_seconds: float
    state_path: Path | None = None
    rate_limit_per_second: float | None = None
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)


@dataclass
class MockState:
    defaults: Defaults
    store: Store
    idempotency: IdempotencyRegistry
    faults: FaultPlan
    webhooks: Deliveries
    stats: Stats = field(default_factory=Stats)
    rate_limit: SlidingWindow = field(default_factory=lambda: SlidingWindow(None))

    @classmethod
    def create(cls, defaults: Defaults, rules: list[Rule]) -> MockState:
        journal = Journal(defaults.state_path) if defaults.state_path else None
        return cls(
            defaults=defaults,
            store=Store(search_lag_seconds=defaults.search_lag_seconds, journal=journal),
            idempotency=IdempotencyRegistry(defaults.idempotency_ttl_seconds),
            faults=FaultPlan(rules, defaults.seed),
            webhooks=Deliveries(defaults.webhooks),
            rate_limit=SlidingWindow(defaults.rate_limit_per_second),
        )

    def reset(self) -> None:
        """Forget objects (on disk too), keys, stats and fault rules; settings go back to
        start-up values."""
        journal = None
        if self.store.journal is not None:
            self.store.journal.close()
            self.store.journal.path.unlink(missing_ok=True)
            journal = Journal(self.store.journal.path)
        # A new Store rather than clearing the old one: a slow request still running holds
        # the old one and finishes harmlessly against it.
        self.store = Store(search_lag_seconds=self.defaults.search_lag_seconds, journal=journal)
        self.idempotency.reset(self.defaults.idempotency_ttl_seconds)
        self.faults.replace([])
        self.faults.reseed(self.defaults.seed)
        self.webhooks.configure(self.defaults.webhooks)
        self.stats.reset()
        self.rate_limit.configure(self.defaults.rate_limit_per_second)
