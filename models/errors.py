"""Typed domain errors: a stable code, a message a person can act on, and the input field at fault.

Only these become GraphQL `userErrors`; anything else escaping a domain function is a bug.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "INVALID"

    def __init__(self, message: str, *, field: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def at(self, *prefix: str) -> DomainError:
        """Re-anchor the field path under an input prefix (for example `items.3`)."""
        self.field = (*prefix, *self.field)
        return self


class NotFound(DomainError):
    code = "NOT_FOUND"


class InvalidTransition(DomainError):
    code = "INVALID_TRANSITION"


class InvoiceNotDraft(DomainError):
    code = "INVOICE_NOT_DRAFT"


class EmptyInvoice(DomainError):
    code = "EMPTY_INVOICE"


class UnknownCurrency(DomainError):
    code = "UNKNOWN_CURRENCY"


class CurrencyMismatch(DomainError):
    code = "CURRENCY_MISMATCH"


class TooManyDecimals(DomainError):
    code = "TOO_MANY_DECIMALS"


class ValueOutOfRange(DomainError):
    code = "VALUE_OUT_OF_RANGE"


class NegativeQuantity(DomainError):
    code = "NEGATIVE_QUANTITY"


class NegativePrice(DomainError):
    code = "NEGATIVE_PRICE"


class InvalidPeriod(DomainError):
    code = "INVALID_PERIOD"


class InvalidValue(DomainError):
    code = "INVALID_VALUE"


class TooManyItems(DomainError):
    code = "TOO_MANY_ITEMS"


class SyncInProgress(DomainError):
    code = "SYNC_IN_PROGRESS"


class Busy(DomainError):
    """A lock could not be taken in time; the client may retry."""

    code = "BUSY"


class UnknownOrganization(DomainError):
    code = "UNKNOWN_ORGANIZATION"


class UnknownProduct(DomainError):
    """No price for this product in the organization's currency at the event's time."""

    code = "UNKNOWN_PRODUCT"


class OutOfWindow(DomainError):
    """Usage older than 35 days or more than 5 minutes ahead (Stripe's meter event window)."""

    code = "OUT_OF_WINDOW"


class IdempotencyConflict(DomainError):
    """An event id seen before with a different payload."""

    code = "IDEMPOTENCY_CONFLICT"


class PeriodClosed(DomainError):
    """Late usage with no open draft to land on (even the current period's is finalized)."""

    code = "PERIOD_CLOSED"


class UsageLinesMetered(DomainError):
    """Usage lines of a draft fed by ingestion come from events only, never by hand."""

    code = "USAGE_LINES_METERED"


class PriceHistoryFixed(DomainError):
    """A price version may not start in the past once an earlier version could have priced usage."""

    code = "PRICE_HISTORY_FIXED"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"
