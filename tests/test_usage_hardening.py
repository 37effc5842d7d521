"""Issue 20's findings, one test each: no event can make another fail, what the client sent is
what is stored, and an unforeseeable failure of one line stays with that line's events."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from models import prices, tables
from models.errors import ErrorCode
from models.invoices import lifecycle
from models.usage import ingest, verify
from models.usage.ingest import UsageEventInput
from tests.test_usage import NOW, PRICES_FROM, acme, ev, usage_rows

__all__ = ["acme"]  # the fixture, imported for pytest


@pytest.fixture
def pricey(db: Session, acme: tables.Organization) -> tables.Organization:
    """A product whose line amount passes the money limit long before its quantity does."""
    prices.set_price(
        db, product="gpu-cluster", unit="hour", currency="USD", unit_price=Decimal(100_000),
        effective_from=PRICES_FROM, now=PRICES_FROM,
    )  # fmt: skip
    return acme


def codes(result: ingest.IngestResult) -> list[tuple[int, str]]:
    return [(r.index, r.code) for r in result.rejected]


def test_a_quantity_past_the_line_amount_limit_is_refused_and_blocks_nothing(
    db: Session, pricey: tables.Organization
) -> None:
    # 99,999,999,999 hours at $1,000 is past the 10^15-cent line limit: refused by itself.
    result = ingest.record_usage(
        db, [ev("huge", product="gpu-cluster", quantity="99999999999"), ev("ok")], now=NOW
    )
    assert (result.accepted, codes(result)) == (1, [(0, ErrorCode.VALUE_OUT_OF_RANGE)])
    # ... and the line keeps taking events.
    again = ingest.record_usage(db, [ev("next", product="gpu-cluster", quantity="2")], now=NOW)
    assert (again.accepted, again.rejected) == (1, [])
    assert verify.verify(db) == []


def test_a_line_sum_past_the_column_is_refused_per_event(
    db: Session, acme: tables.Organization
) -> None:
    # Each fits NUMERIC(20,9); two on one line do not: the first stands, the second is refused.
    result = ingest.record_usage(
        db,
        [ev("a", product="egress", quantity="60000000000"),
         ev("b", product="egress", quantity="60000000000"), ev("c")],
        now=NOW,
    )  # fmt: skip
    assert (result.accepted, codes(result)) == (2, [(1, ErrorCode.VALUE_OUT_OF_RANGE)])
    # Across batches too: the stored sum counts.
    later = ingest.record_usage(db, [ev("d", product="egress", quantity="60000000000")], now=NOW)
    assert (later.accepted, codes(later)) == (0, [(0, ErrorCode.VALUE_OUT_OF_RANGE)])
    assert [r.quantity for r in usage_rows(db, acme.id) if r.product == "egress"] == [
        Decimal("60000000000")
    ]
    assert verify.verify(db) == []


BAD_TEXT = [
    ("metadata NaN", {"metadata": {"a": Decimal("NaN")}}),
    ("metadata Infinity", {"metadata": {"a": Decimal("Infinity")}}),
    ("metadata float inf", {"metadata": {"a": float("inf")}}),
    ("metadata NUL key", {"metadata": {"a\x00": "x"}}),
    ("metadata NUL value", {"metadata": {"a": "x\x00"}}),
    ("metadata surrogate value", {"metadata": {"a": "\ud800"}}),
    ("metadata surrogate key", {"metadata": {"\ud800": 1}}),
    ("metadata nested surrogate", {"metadata": {"a": ["\udfff"]}}),
    ("id surrogate", {"event_id": "x\ud800"}),
    ("app surrogate", {"app": "\ud800"}),
    ("product surrogate", {"product": "\ud800"}),
    ("org surrogate", {"org": "\ud800"}),
    ("region NUL", {"region": "a\x00"}),
]


@pytest.mark.parametrize(("name", "bad"), BAD_TEXT, ids=[b[0] for b in BAD_TEXT])
def test_unstorable_values_are_invalid_per_event(
    db: Session, acme: tables.Organization, name: str, bad: dict[str, Any]
) -> None:
    result = ingest.record_usage(db, [ev("good-1"), ev(**bad), ev("good-2")], now=NOW)
    assert (result.accepted, codes(result)) == (2, [(1, ErrorCode.INVALID_VALUE)])


@pytest.mark.parametrize("field", ["event_id", "product", "app", "region", "org"])
def test_surrounding_whitespace_is_refused_not_stripped(
    db: Session, acme: tables.Organization, field: str
) -> None:
    value = {"event_id": "  x-1  ", "product": " egress", "app": "web ", "region": "ams\n",
             "org": " acme"}[field]  # fmt: skip
    result = ingest.record_usage(db, [ev("x-1"), ev(**{field: value})], now=NOW)
    assert (result.accepted, codes(result)) == (1, [(1, ErrorCode.INVALID_VALUE)])
    assert result.rejected[0].message.endswith("leading or trailing whitespace")


def test_metadata_is_stored_as_sent_and_numbers_are_not_strings(
    db: Session, acme: tables.Organization
) -> None:
    metadata = json.loads('{"a": 1.50, "b": 1, "c": "1.5", "d": [2.0e0, null, true]}',
                          parse_float=Decimal)  # fmt: skip
    first = ingest.record_usage(
        db, [ev("m", metadata=metadata, at=NOW - timedelta(hours=1))], now=NOW
    )
    assert first.accepted == 1
    stored = db.execute(
        sa.text("SELECT metadata::text FROM usage_events WHERE event_id = 'm'")
    ).scalar_one()
    assert json.loads(stored, parse_float=Decimal) == metadata
    assert '"a": 1.50' in stored and '"c": "1.5"' in stored
    # A resend with the number written as a string is a different payload, not a duplicate.
    resend = ingest.record_usage(
        db, [ev("m", metadata={**metadata, "a": "1.50"}, at=NOW - timedelta(hours=1))], now=NOW
    )
    assert codes(resend) == [(0, ErrorCode.IDEMPOTENCY_CONFLICT)]


def test_an_unforeseeable_failure_of_one_line_keeps_to_its_events(
    db: Session, acme: tables.Organization
) -> None:
    # A fault injected into one line (a trigger refusing it): the other lines' events count.
    db.execute(
        sa.text(
            "CREATE FUNCTION pg_temp.boom() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF NEW.region = 'boom' THEN RAISE EXCEPTION 'injected fault'; END IF; "
            "RETURN NEW; END $$"
        )
    )
    db.execute(
        sa.text(
            "CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON invoice_items "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.boom()"
        )
    )
    beta = __import__("tests.factories", fromlist=["make_org"]).make_org(db, slug="beta")
    result = ingest.record_usage(
        db,
        [ev("a1"), ev("b1", org="beta", region="boom"), ev("b2", org="beta"), ev("a2")],
        now=NOW,
        request_id="req-42",
    )
    assert result.accepted == 2
    assert [(r.index, r.code) for r in result.rejected] == [
        (1, ErrorCode.NOT_RECORDED), (2, ErrorCode.NOT_RECORDED)
    ]  # fmt: skip
    assert all("req-42" in r.message for r in result.rejected)
    # Nothing of the failed group was kept: its ids are free for the retry.
    assert (
        db.execute(
            sa.text("SELECT count(*) FROM usage_event_ids WHERE organization_id = :o"),
            {"o": beta.id},
        ).scalar_one()
        == 0
    )
    assert verify.verify(db) == []


def test_verify_checks_finalized_invoices_too(db: Session, acme: tables.Organization) -> None:
    ingest.record_usage(db, [ev("f1", quantity="1000")], now=NOW)
    draft = db.execute(sa.text("SELECT invoice_id FROM usage_drafts")).scalar_one()
    lifecycle.finalize(db, db.get_one(tables.Invoice, draft), now=NOW, rollup_shards=4)
    assert verify.verify(db) == []
    # A finalized line edited behind the guards (as the owner could) is found.
    db.execute(sa.text("ALTER TABLE invoice_items DISABLE TRIGGER USER"))
    db.execute(sa.text("UPDATE invoice_items SET quantity = 1 WHERE price_id IS NOT NULL"))
    db.execute(sa.text("ALTER TABLE invoice_items ENABLE TRIGGER USER"))
    assert [d.what for d in verify.verify(db)] == ["line"]


def test_bad_events_beside_good_ones_through_from_json(
    db: Session, acme: tables.Organization
) -> None:
    # What POST /v1/usage builds: an unknown JSON value type in metadata is refused too.
    good = {"id": "j1", "organizationSlug": "acme", "product": "egress", "quantity": "1",
            "occurredAt": (NOW - timedelta(hours=1)).isoformat()}  # fmt: skip
    bad = {**good, "id": "j2", "metadata": {"a": {1, 2}}}
    result = ingest.record_usage(
        db, [UsageEventInput.from_json(good), UsageEventInput.from_json(bad)], now=NOW
    )
    assert (result.accepted, codes(result)) == (1, [(1, ErrorCode.INVALID_VALUE)])
    assert date(2026, 3, 1)  # the draft month of NOW


# Every kind of bad value, each with the code it must be refused with. Valid events are unique
# ids on a few lines; bad ones carry ids of their own (so a refusal never shadows a valid id).
BAD_KINDS: dict[str, tuple[dict[str, Any], str]] = {
    "nan metadata": ({"metadata": {"a": Decimal("NaN")}}, ErrorCode.INVALID_VALUE),
    "infinite metadata": ({"metadata": {"a": [Decimal("-Infinity")]}}, ErrorCode.INVALID_VALUE),
    "NUL metadata key": ({"metadata": {"\x00": 1}}, ErrorCode.INVALID_VALUE),
    "surrogate metadata": ({"metadata": {"a": "\udc00"}}, ErrorCode.INVALID_VALUE),
    "surrogate product": ({"product": "egress\ud800"}, ErrorCode.INVALID_VALUE),
    "surrogate app": ({"app": "\ud800"}, ErrorCode.INVALID_VALUE),
    "padded product": ({"product": "egress "}, ErrorCode.INVALID_VALUE),
    "padded region": ({"region": " ams"}, ErrorCode.INVALID_VALUE),
    "NUL region": ({"region": "a\x00"}, ErrorCode.INVALID_VALUE),
    "huge quantity": ({"quantity": "100000000000"}, ErrorCode.VALUE_OUT_OF_RANGE),
    "line amount past the limit": (
        {"product": "gpu-cluster", "quantity": "99999999999"},
        ErrorCode.VALUE_OUT_OF_RANGE,
    ),
    "negative": ({"quantity": "-1"}, ErrorCode.NEGATIVE_QUANTITY),
    "ten decimals": ({"quantity": "0.0000000001"}, ErrorCode.TOO_MANY_DECIMALS),
    "unknown org": ({"org": "nobody"}, ErrorCode.UNKNOWN_ORGANIZATION),
    "unknown product": ({"product": "teleport"}, ErrorCode.UNKNOWN_PRODUCT),
    "too old": ({"at": NOW - timedelta(days=36)}, ErrorCode.OUT_OF_WINDOW),
}
valid_strategy = st.tuples(
    st.sampled_from(["egress", "machines-shared-cpu", "gpu-cluster"]),
    st.sampled_from(["web", None]),
    st.decimals(min_value=0, max_value=10**4, places=3, allow_nan=False, allow_infinity=False),
)
mixed_strategy = st.lists(
    st.one_of(valid_strategy, st.sampled_from(sorted(BAD_KINDS))), min_size=1, max_size=40
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=mixed_strategy, chunk=st.integers(1, 15), resend=st.booleans())
def test_valid_events_count_once_and_bad_ones_are_reported_with_their_code(
    db: Session, pricey: tables.Organization, items: list[Any], chunk: int, resend: bool
) -> None:
    with db.begin_nested() as sp:
        inputs: list[UsageEventInput] = []
        want_codes: list[str | None] = []
        for n, item in enumerate(items):
            if isinstance(item, str):
                overrides, code = BAD_KINDS[item]
                inputs.append(ev(f"bad-{n}", **overrides))
                want_codes.append(code)
            else:
                product, app, quantity = item
                inputs.append(
                    ev(f"ok-{n}", product=product, app=app, quantity=format(quantity, "f"))
                )
                want_codes.append(None)
        got_codes: list[str | None] = [None] * len(inputs)
        accepted = 0
        for start in range(0, len(inputs), chunk):
            part = inputs[start : start + chunk]
            result = ingest.record_usage(db, part, now=NOW)
            accepted += result.accepted
            for r in result.rejected:
                got_codes[start + r.index] = r.code
        assert got_codes == want_codes
        assert accepted == want_codes.count(None)
        if resend:  # the whole stream again: every valid event is a duplicate, nothing more
            again = ingest.record_usage(db, inputs, now=NOW)
            assert (again.accepted, again.duplicates) == (0, want_codes.count(None))
        stored = db.execute(sa.text("SELECT count(*) FROM usage_event_ids")).scalar_one()
        assert stored == want_codes.count(None)
        total = db.execute(
            sa.text("SELECT coalesce(sum(quantity), 0) FROM usage_events")
        ).scalar_one()
        assert total == sum(
            (Decimal(i.quantity) for i, c in zip(inputs, want_codes, strict=True) if c is None),
            Decimal(0),
        )
        assert verify.verify(db) == []
        sp.rollback()


@pytest.mark.parametrize(
    ("quantity", "unit_price"),
    [("1", "0.5"), ("3", "0.5"), ("5", "0.5"), ("2.5", "1"), ("0", "7"), ("1", "0.4999999999999"),
     ("99999999999.999999999", "9999.999999999999"), ("12345678901.123456789", "0.000027006173"),
     ("1.000000001", "999999999999.5")],
)  # fmt: skip
def test_the_sql_rounding_is_the_one_rule(db: Session, quantity: str, unit_price: str) -> None:
    # The ingest's one write per line rounds in SQL (usage_half_even); it must be the Python rule
    # exactly, on products past the default decimal context's 28 digits too.
    from models.money import line_amount_cents

    q, p = Decimal(quantity), Decimal(unit_price)
    sql = db.execute(
        sa.text("SELECT usage_half_even(CAST(:q AS numeric) * CAST(:p AS numeric))"),
        {"q": q, "p": p},
    ).scalar_one()
    with localcontext() as ctx:  # an exact reference: wide enough for 44 digits
        ctx.prec = 80
        want = int((q * p).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert int(sql) == want
    if abs(want) <= 10**15:  # within the money limit, the Python rule agrees to the cent
        assert line_amount_cents(q, p) == want
