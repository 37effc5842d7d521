from sqlmodel import Session

from tests.factories import make_invoice, make_org


def test_finalize_numbers_and_totals(db: Session) -> None:
    org = make_org(db, slug="smoke")
    inv = make_invoice(db, org, status="open", lines=3)
    assert inv.number == "SMOKE-0001"
    assert inv.subtotal_cents == 250 * (1 + 2 + 3)
