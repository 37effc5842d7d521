"""The one text rule (models/text.py), directly and through every writer that stores text:
usage events, invoice lines, prices, organizations; and the lookups of gql/core/permissions.py."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import Session

from models import organizations, prices, text
from models.errors import ErrorCode, InvalidValue
from models.invoices import lifecycle
from models.tables import LineItemKind

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
BAD = {
    "NUL": ("a\x00b", "cannot contain NUL characters"),
    "lone surrogate": ("a\ud800", "contains a lone UTF-16 surrogate"),
    "leading space": (" a", "has leading or trailing whitespace"),
    "trailing newline": ("a\n", "has leading or trailing whitespace"),
    "too long": ("a" * 11, "is longer than 10 characters"),
    "not a string": (12, "must be a string"),
}


@pytest.mark.parametrize(("value", "why"), BAD.values(), ids=BAD.keys())
def test_the_rule_refuses_with_a_code_and_says_why(value: Any, why: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        text.text(value, "name", required=True, limit=10)
    assert caught.value.code == ErrorCode.INVALID_VALUE
    assert caught.value.field == ("name",)
    assert caught.value.message == f"name {why}"


def test_the_rule_keeps_good_text_exactly_and_absent_optional_text_as_none() -> None:
    assert text.text("a b", "name", required=True, limit=10) == "a b"
    assert text.text("é\u00a0x", "name", required=True, limit=10) == "é\u00a0x"
    assert text.text(None, "name", required=False, limit=10) is None
    assert text.text("", "name", required=False, limit=10) is None
    with pytest.raises(InvalidValue, match="name is required"):
        text.text("", "name", required=True, limit=10)
    assert text.storable("ok") and not text.storable("\x00") and not text.storable("\udfff")


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({"a": Decimal("NaN")}, "finite"),
        ({"a": float("-inf")}, "finite"),
        ({"a\x00": 1}, "key cannot contain NUL"),
        ({"a": ["\ud800"]}, "value contains a lone UTF-16 surrogate"),
        ({"a": {1, 2}}, "cannot hold a set"),
        ({"a": {"b": {"c": {"d": {"e": {}}}}}}, "nested deeper than 5"),
    ],
)
def test_metadata_problems(metadata: dict[str, Any], why: str) -> None:
    problem = text.metadata_problem(metadata, max_depth=5)
    assert problem is not None and why in problem
    assert text.metadata_problem({"a": [1, Decimal("1.5"), None, True, " x "]}, max_depth=5) is None


def line(**overrides: Any) -> lifecycle.LineInput:
    fields: dict[str, Any] = {
        "kind": LineItemKind.USAGE, "description": "CPU", "product": "cpu", "unit": "s",
        "quantity": "1", "unit_price": "1", "app": "web", "region": "ams",
        **overrides,
    }  # fmt: skip
    return lifecycle.LineInput(**fields)


@pytest.mark.parametrize("field", ["description", "product", "unit", "app", "region"])
@pytest.mark.parametrize("value", [" padded", "x\ud800", "x\x00"])
def test_invoice_lines_follow_the_rule(field: str, value: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        lifecycle.line_values(line(**{field: value}))
    assert caught.value.field == (field,)


def test_invoice_line_metadata_follows_the_rule() -> None:
    with pytest.raises(InvalidValue, match="NUL"):
        lifecycle.line_values(line(metadata={"k": "a\x00"}))


@pytest.mark.parametrize("field", ["product", "unit"])
@pytest.mark.parametrize("value", [" egress", "egress\t", "x\ud800", "x\x00"])
def test_prices_follow_the_rule(db: Session, field: str, value: str) -> None:
    args: dict[str, Any] = {"product": "egress", "unit": "GB", field: value}
    with pytest.raises(InvalidValue) as caught:
        prices.set_price(db, currency="USD", unit_price="1", effective_from=NOW, now=NOW, **args)
    assert caught.value.field == (field,)


@pytest.mark.parametrize("name", [" Acme", "Acme\x00", "Acme\ud800"])
def test_organization_names_follow_the_rule(db: Session, name: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        organizations.create(db, slug="acme", name=name, billing_email="a@example.com")
    assert caught.value.field == ("name",)


def test_permissions_lookups_use_the_rule() -> None:
    from gql.core import permissions

    assert permissions.storable is text.storable
