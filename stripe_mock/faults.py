"""Fault rules: which requests fail, and how.

A rule names an endpoint template (`POST /v1/invoices/{id}/add_lines`) or `*`, a fault, and
either a `probability` or a `count` of next matching requests. Rules are tried in order and
the first that fires wins. One seeded RNG serves all probability rules, so a run with a seed
and the same request order fails the same requests.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

FaultKind = Literal[
    "error_500", "saved_500", "rate_limit", "timeout", "slow", "lost_response", "auth_error"
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "error_500",
    "saved_500",
    "rate_limit",
    "timeout",
    "slow",
    "lost_response",
    "auth_error",
)
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_SLOW_SECONDS = 2.0
DEFAULT_RETRY_AFTER = 1.0
_RULE_KEYS = frozenset(
    {"endpoint", "fault", "probability", "count", "seconds", "retry_after", "executed"}
)


class RuleError(ValueError):
    pass


@dataclass
class Rule:
    endpoint: str
    fault: FaultKind
    probability: float | None
    remaining: int | None
    seconds: float
    retry_after: float
    # saved_500 only: whether the request ran before the 500 was stored for its key. Either
    # way a client cannot tell from the answer, which is the point.
    executed: bool = True
    fired: int = 0

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"endpoint": self.endpoint, "fault": self.fault}
        if self.probability is not None:
            described["probability"] = self.probability
        else:
            described["count"] = self.remaining
        if self.fault in ("timeout", "slow"):
            described["seconds"] = self.seconds
        if self.fault == "rate_limit":
            described["retry_after"] = self.retry_after
        if self.fault == "saved_500":
            described["executed"] = self.executed
        described["fired"] = self.fired
        return described


def parse_rules(raw: object, endpoints: Iterable[str]) -> list[Rule]:
    """Validate rules from JSON; an unknown endpoint is an error, not a rule that never fires."""
    if not isinstance(raw, list):
        raise RuleError("rules must be a list")
    known = set(endpoints) | {"*"}
    return [_parse_rule(item, i, known) for i, item in enumerate(raw)]


def _parse_rule(item: object, index: int, known: set[str]) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, Mapping):
        raise RuleError(f"{where} must be an object")
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    endpoint = item.get("endpoint", "*")
    if endpoint not in known:
        raise RuleError(f"{where}: unknown endpoint {endpoint!r}; use one of {sorted(known)}")
    fault = item.get("fault")
    if fault not in FAULT_KINDS:
        raise RuleError(f"{where}: fault must be one of {', '.join(FAULT_KINDS)}")
    probability, count = item.get("probability"), item.get("count")
    if (probability is None) == (count is None):
        raise RuleError(f"{where}: give exactly one of probability or count")
    if probability is not None and not (_is_number(probability) and 0 <= probability <= 1):
        raise RuleError(f"{where}: probability must be a number between 0 and 1")
    if count is not None and not (
        isinstance(count, int) and not isinstance(count, bool) and count >= 0
    ):
        raise RuleError(f"{where}: count must be a non-negative integer")
    default_seconds = DEFAULT_TIMEOUT_SECONDS if fault == "timeout" else DEFAULT_SLOW_SECONDS
    executed = item.get("executed", True)
    if not isinstance(executed, bool):
        raise RuleError(f"{where}: executed must be true or false")
    return Rule(
        endpoint=str(endpoint),
        fault=cast(FaultKind, fault),
        probability=None if probability is None else float(probability),
        remaining=count,
        seconds=_seconds(item, "seconds", default_seconds, where),
        retry_after=_seconds(item, "retry_after", DEFAULT_RETRY_AFTER, where),
        executed=executed,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(item: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = item.get(key, default)
    if not _is_number(value) or value < 0:
        raise RuleError(f"{where}: {key} must be a non-negative number of seconds")
    return float(value)


class FaultPlan:
    def __init__(self, rules: list[Rule], seed: int | None) -> None:
        self._lock = threading.Lock()
        self._rules = rules
        self._rng = random.Random(seed)

    def replace(self, rules: list[Rule]) -> None:
        with self._lock:
            self._rules = rules

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def pick(self, endpoint: str) -> Rule | None:
        """The rule that fires for this request, if any; spends one unit of a count rule."""
        with self._lock:
            for rule in self._rules:
                if rule.endpoint not in ("*", endpoint):
                    continue
                if rule.remaining is not None:
                    if rule.remaining == 0:
                        continue
                    rule.remaining -= 1
                elif rule.probability is None or self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
            return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.describe() for rule in self._rules]
