"""models/invoices/numbering.py (through lifecycle.finalize): invoice numbers are unique and gap-free per
organization under concurrent finalizes, and a rolled-back finalize gives its number back."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from models import tables
from models.invoices import lifecycle
from tests.factories import NOW, SHARDS, make_invoice, make_org


def test_concurrent_finalizes_yield_gap_free_unique_numbers(
    committed: sessionmaker[Session],
) -> None:
    with committed() as s, s.begin():
        orgs = [make_org(s, slug=f"num-{i}") for i in range(3)]
        drafts = [make_invoice(s, org, lines=2).id for org in orgs for _ in range(20)]
    start = threading.Event()  # release all threads at once, so the finalizes really overlap

    def finalize(invoice_id: int | None) -> str:
        assert invoice_id is not None
        start.wait(timeout=5)
        with committed() as s, s.begin():
            inv = s.get_one(tables.Invoice, invoice_id)
            done = lifecycle.finalize(s, inv, now=NOW, rollup_shards=SHARDS)
            assert done.number is not None
            return done.number

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(finalize, d) for d in drafts]
        start.set()
        numbers = [f.result() for f in futures]

    assert len(set(numbers)) == len(numbers) == 60
    with committed() as s:
        for org in orgs:
            got = sorted(
                s.exec(
                    select(tables.Invoice.number).where(tables.Invoice.organization_id == org.id)
                ).all()
            )
            prefix = org.invoice_prefix
            assert got == [f"{prefix}-{n:04d}" for n in range(1, 21)]


def test_a_rolled_back_finalize_returns_its_number(committed: sessionmaker[Session]) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="rollback-co")
        first, second = make_invoice(s, org).id, make_invoice(s, org).id
    with committed() as s:
        s.begin()
        lifecycle.finalize(s, s.get_one(tables.Invoice, first), now=NOW, rollup_shards=SHARDS)
        s.rollback()
    with committed() as s, s.begin():
        done = lifecycle.finalize(
            s, s.get_one(tables.Invoice, second), now=NOW, rollup_shards=SHARDS
        )
        assert done.number == "ROLLBACK-0001"
        assert s.execute(sa.text("SELECT count(*) FROM invoice_sync")).scalar_one() == 1
