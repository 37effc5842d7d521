"""What Stripe serves people rather than programs: the hosted invoice page
(`hosted_invoice_url`) and the invoice PDF (`invoice_pdf`), both set once an invoice is
finalized and null on drafts, as Stripe does.

The URLs are absolute on the mock's own address (the Host of the API request that shaped the
invoice, kept in a context variable by the endpoint), so a link in our dashboard opens a page
the mock answers: a small HTML page and a real, minimal PDF (one page, built by hand: no PDF
library for a test double).
"""

from __future__ import annotations

import html
from contextvars import ContextVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .state import MockState
from .store import Invoice

# Set per API request by the endpoint; the default is `billing mock-stripe`'s address.
PUBLIC_BASE: ContextVar[str] = ContextVar("PUBLIC_BASE", default="http://127.0.0.1:12111")


def hosted_url(inv: Invoice) -> str | None:
    return None if inv.status == "draft" else f"{PUBLIC_BASE.get()}/i/{inv.id}"


def pdf_url(inv: Invoice) -> str | None:
    return None if inv.status == "draft" else f"{PUBLIC_BASE.get()}/i/{inv.id}/pdf"


def _amount(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency.upper()}"


def _summary(inv: Invoice) -> list[str]:
    return [
        f"Invoice {inv.number or inv.id}",
        f"Status: {inv.status}",
        f"Total: {_amount(inv.total, inv.currency)}",
        f"Lines: {len(inv.items)}",
        "(mock Stripe: nothing here charges anyone)",
    ]


def tiny_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF showing `lines` in Helvetica, with a correct xref table."""

    def esc(text: str) -> str:
        ascii_text = text.encode("latin-1", "replace").decode("latin-1")
        return ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 14 Tf", "72 760 Td", "18 TL"]
    ops += [f"({esc(line)}) Tj T*" for line in lines]
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def page_routes(state: MockState) -> list[Route]:
    def finalized(request: Request) -> Invoice | None:
        inv = state.store.invoices.get(str(request.path_params["id"]))
        return None if inv is None or inv.status == "draft" else inv

    async def hosted(request: Request) -> Response:
        inv = finalized(request)
        if inv is None:
            return HTMLResponse("<h1>No such invoice</h1>", 404)
        items = "".join(f"<li>{html.escape(line)}</li>" for line in _summary(inv))
        pdf = html.escape(pdf_url(inv) or "")
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>Invoice</title></head>"
            f"<body><h1>Pay invoice {html.escape(inv.number or inv.id)}</h1><ul>{items}</ul>"
            f"<p><a href='{pdf}'>Download PDF</a></p></body></html>"
        )

    async def pdf(request: Request) -> Response:
        inv = finalized(request)
        if inv is None:
            return Response(b"not found", 404, media_type="text/plain")
        return Response(tiny_pdf(_summary(inv)), media_type="application/pdf")

    return [
        Route("/i/{id}", hosted, methods=["GET"]),
        Route("/i/{id}/pdf", pdf, methods=["GET"]),
    ]
