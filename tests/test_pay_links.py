"""Links people can pay from: the mock answers `hosted_invoice_url` and `invoice_pdf` for a
finalized invoice (null on drafts) at addresses it serves (a small HTML page, a real PDF), the
sync stores them when it finalizes, and `Invoice.hostedInvoiceUrl` / `pdfUrl` answer them."""

from __future__ import annotations

import httpx
import stripe
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from sync.attempt import Outcome
from sync.runtime import Runtime
from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token
from tests.sync_helpers import Mock, finalized, run_once, sync_row

QUERY = """query($id: ID!) { invoice(id: $id) { number hostedInvoiceUrl pdfUrl } }"""


def test_a_draft_on_the_mock_has_no_links_and_a_finalized_one_has_both(mock: Mock) -> None:
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": mock.url})
    customer = client.customers.create(params={"name": "x"})
    draft = client.invoices.create(params={"customer": customer.id, "auto_advance": False})
    assert draft.hosted_invoice_url is None and draft.invoice_pdf is None
    client.invoice_items.create(
        params={"customer": customer.id, "invoice": draft.id, "amount": 1234, "currency": "usd"}
    )
    done = client.invoices.finalize_invoice(draft.id)
    assert done.hosted_invoice_url and done.hosted_invoice_url.startswith(mock.url)
    page = httpx.get(done.hosted_invoice_url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert (done.number or "") in page.text and "12.34" in page.text
    assert done.invoice_pdf is not None
    pdf = httpx.get(done.invoice_pdf)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4") and pdf.content.rstrip().endswith(b"%%EOF")
    # The cross-reference table points at each object: a reader can open it.
    startxref = int(pdf.content.rsplit(b"startxref", 1)[1].split()[0])
    assert pdf.content[startxref:].startswith(b"xref")
    assert httpx.get(f"{mock.url}/i/in_nothing").status_code == 404


def test_the_sync_stores_the_links_and_the_api_answers_them(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session], api: Api
) -> None:
    inv = finalized(committed, lines=3)
    with committed() as s, s.begin():
        org = make_org(s, slug="other-co")
        draft = make_invoice(s, org, status="draft")
        admin = make_token(s, None, admin=True)
    before = api.data(QUERY, admin, id=inv.public_id)["invoice"]
    assert before["hostedInvoiceUrl"] is None and before["pdfUrl"] is None  # not synced yet

    assert run_once(rt, inv.id) == Outcome.SYNCED
    row = sync_row(committed, inv.id)
    (remote,) = mock.remote_for(inv.public_id)
    assert row.hosted_invoice_url == remote["hosted_invoice_url"] is not None
    assert row.invoice_pdf_url == remote["invoice_pdf"] is not None

    after = api.data(QUERY, admin, id=inv.public_id)["invoice"]
    assert after["hostedInvoiceUrl"] == row.hosted_invoice_url
    assert after["pdfUrl"] == row.invoice_pdf_url
    assert httpx.get(after["pdfUrl"]).content.startswith(b"%PDF")
    assert api.data(QUERY, admin, id=draft.public_id)["invoice"]["hostedInvoiceUrl"] is None
