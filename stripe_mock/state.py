"""Everything the mock remembers, in one object that `POST /_mock/reset` can clear."""

from __future__ import annotations

from dataclasses import dataclass, field

from .faults import FaultPlan, Rule
from .idempotency import IdempotencyRegistry
from .stats import Stats
from .store import Store


@dataclass
class Defaults:
    """Start-up settings that a reset returns to."""

    idempotency_ttl_seconds: float
    seed: int | None
    search_lag_seconds: float


@dataclass
class MockState:
    defaults: Defaults
    store: Store
    idempotency: IdempotencyRegistry
    faults: FaultPlan
    stats: Stats = field(default_factory=Stats)

    @classmethod
    def create(cls, defaults: Defaults, rules: list[Rule]) -> MockState:
        return cls(
            defaults=defaults,
            store=Store(search_lag_seconds=defaults.search_lag_seconds),
            idempotency=IdempotencyRegistry(defaults.idempotency_ttl_seconds),
            faults=FaultPlan(rules, defaults.seed),
        )

    def reset(self) -> None:
        """Forget objects, keys, stats and fault rules; settings go back to start-up values."""
        # A new Store rather than clearing the old one: a slow request still running holds
        # the old one and finishes harmlessly against it.
        self.store = Store(search_lag_seconds=self.defaults.search_lag_seconds)
        self.idempotency.reset(self.defaults.idempotency_ttl_seconds)
        self.faults.replace([])
        self.faults.reseed(self.defaults.seed)
        self.stats.reset()
