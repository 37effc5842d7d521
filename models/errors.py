"""Typed domain errors: a stable code, a message a person can act on, and the input field at fault.

Only these become GraphQL `userErrors`; anything else escaping a domain function is a bug.
`ErrorCode` is the one list of codes: each error class names its member, and the API publishes
the enum as is (gql/core/errors.py), so a new error needs no second edit to reach clients.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """Stable, SCREAMING codes with one meaning each; clients branch on them."""

    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    INVOICE_NOT_DRAFT = "INVOICE_NOT_DRAFT"
    EMPTY_INVOICE = "EMPTY_INVOICE"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    TOO_MANY_DECIMALS = "TOO_MANY_DECIMALS"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    NEGATIVE_QUANTITY = "NEGATIVE_QUANTITY"
    NEGATIVE_PRICE = "NEGATIVE_PRICE"
    INVALID_PERIOD = "INVALID_PERIOD"
    INVALID_VALUE = "INVALID_VALUE"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS"
    BUSY = "BUSY"
    UNKNOWN_ORGANIZATION = "UNKNOWN_ORGANIZATION"
    UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
    OUT_OF_WINDOW = "OUT_OF_WINDOW"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    PERIOD_CLOSED = "PERIOD_CLOSED"
    USAGE_LINES_METERED = "USAGE_LINES_METERED"
    PRICE_HISTORY_FIXED = "PRICE_HISTORY_FIXED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    NOT_RECORDED = "NOT_RECORDED"
    OVER_CREDIT = "OVER_CREDIT"
    INVALID_SETTLEMENT = "INVALID_SETTLEMENT"


class DomainError(Exception):
    """Bad input or an illegal state change. Raised bare only when no narrower code fits."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID

    def __init__(self, message: str, *, field: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Further errors of the same call, reported with this one (a batch of lines).
        self.also: list[DomainError] = []

    def at(self, *prefix: str) -> DomainError:
        """Re-anchor the field path under an input prefix (for example `items.3`)."""
        self.field = (*prefix, *self.field)
        return self


class NotFound(DomainError):
    """No such record, or not one the caller may see (the two read the same)."""

    code = ErrorCode.NOT_FOUND


class InvalidTransition(DomainError):
    """The invoice's status does not allow this change (see the lifecycle in docs/invoices.md)."""

    code = ErrorCode.INVALID_TRANSITION


class InvoiceNotDraft(DomainError):
    """Only a DRAFT invoice takes new lines."""

    code = ErrorCode.INVOICE_NOT_DRAFT


class EmptyInvoice(DomainError):
    """An invoice with no lines cannot be finalized."""

    code = ErrorCode.EMPTY_INVOICE


class UnknownCurrency(DomainError):
    """Not a currency we bill in (ISO 4217, three letters)."""

    code = ErrorCode.UNKNOWN_CURRENCY


class TooManyDecimals(DomainError):
    """A quantity or price has more decimal places than allowed."""

    code = ErrorCode.TOO_MANY_DECIMALS


class ValueOutOfRange(DomainError):
    """A number or date is outside the range allowed for the field."""

    code = ErrorCode.VALUE_OUT_OF_RANGE


class NegativeQuantity(DomainError):
    """Quantities are zero or more; a credit carries a negative unit price instead."""

    code = ErrorCode.NEGATIVE_QUANTITY


class NegativePrice(DomainError):
    """Charges (usage, subscription, one-off) cost zero or more; give money back with a CREDIT
    or ADJUSTMENT line."""

    code = ErrorCode.NEGATIVE_PRICE


class InvalidPeriod(DomainError):
    """The period is empty, reversed or not whole days."""

    code = ErrorCode.INVALID_PERIOD


class InvalidValue(DomainError):
    """The value does not have the expected form (a blank text, a malformed key)."""

    code = ErrorCode.INVALID_VALUE


class TooManyItems(DomainError):
    """Too many items in one call; split the batch."""

    code = ErrorCode.TOO_MANY_ITEMS


class Busy(DomainError):
    """A lock could not be taken in time; the client may retry."""

    code = ErrorCode.BUSY


class UnknownOrganization(DomainError):
    """No organization with that slug."""

    code = ErrorCode.UNKNOWN_ORGANIZATION


class UnknownProduct(DomainError):
    """No price for this product in the organization's currency at the event's time."""

    code = ErrorCode.UNKNOWN_PRODUCT


class OutOfWindow(DomainError):
    """Usage older than 35 days or more than 5 minutes ahead (Stripe's meter event window)."""

    code = ErrorCode.OUT_OF_WINDOW


class IdempotencyConflict(DomainError):
    """An id seen before with a different payload: a usage event id, or a mutation's
    idempotency key sent again with other input."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class PeriodClosed(DomainError):
    """Late usage with no open draft to land on (even the current period's is finalized)."""

    code = ErrorCode.PERIOD_CLOSED


class UsageLinesMetered(DomainError):
    """Usage lines of a draft fed by ingestion come from events only, never by hand."""

    code = ErrorCode.USAGE_LINES_METERED


class PriceHistoryFixed(DomainError):
    """A price version may not start in the past once an earlier version could have priced usage."""

    code = ErrorCode.PRICE_HISTORY_FIXED


class AlreadyExists(DomainError):
    """Something with that identity exists already (an organization slug)."""

    code = ErrorCode.ALREADY_EXISTS


class NotRecorded(DomainError):
    """The event was valid but could not be recorded because of a server-side failure of its
    line; nothing of it was stored. Retry it later; quote the request id in the message to
    support if it persists."""

    code = ErrorCode.NOT_RECORDED


class OverCredit(DomainError):
    """A credit note would credit a line, or the invoice, beyond what it billed (counting every
    issued credit note)."""

    code = ErrorCode.OVER_CREDIT


class InvalidSettlement(DomainError):
    """A credit note's refund / customer balance / out-of-band split does not fit the invoice:
    required and summing to the total on a PAID invoice, absent otherwise."""

    code = ErrorCode.INVALID_SETTLEMENT


def meaning(code: ErrorCode) -> str:
    """What a code means to a client: the first paragraph of its error class's docstring."""
    classes = [DomainError]
    while classes:
        cls = classes.pop()
        if cls.code is code and cls.__doc__:
            return " ".join(cls.__doc__.split("\n\n")[0].split())
        classes.extend(cls.__subclasses__())
    raise LookupError(f"no DomainError with code {code}: add one, with a docstring")
