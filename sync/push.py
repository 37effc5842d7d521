"""Pushing one invoice to Stripe: the steps, each resumable, as plain functions over a Session
and a StripeGateway.

    ensure_customer -> create_remote_invoice -> add_missing_lines -> finalize_remote
        -> verify_remote                      (or void_remote, for an invoice voided here)

Every remote id is stored as soon as it is known, in a short transaction of its own (no
transaction is ever open while we wait for Stripe), so a crash resumes where it stopped.

Why the lookups: an idempotency key makes a retried POST return the first result, but only for
24 hours (Stripe prunes keys after that), and a lost response leaves us without the id of what
was created. So whenever an earlier attempt may have reached Stripe, a step whose remote id is
unknown looks the object up by metadata before creating it, and `add_missing_lines` lists what
the remote invoice already holds. Stripe's search index lags writes by up to a minute; that
window is inside the key's 24 hours, so between them there is no gap. A first attempt cannot
have left anything on Stripe, so it creates directly: the happy path costs 2 + ceil(lines / 50)
calls (plus the customer, once per organization).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from models import tables
from models.tables import InvoiceStatus
from sync import credit_notes, due_dates, keys, lookup, memory, remote_gone, remote_ids
from sync.errors import Mismatch
from sync.grouping import LINE_KEY, RemoteLine, remote_lines
from sync.stripe_client import RemoteInvoice, RemoteLineRef, StripeGateway

# Statuses a finalized Stripe invoice may have while ours is open, paid or uncollectible.
# (A zero-total invoice is marked paid by Stripe the moment it is finalized.)
SETTLED_REMOTE = ("open", "paid", "uncollectible")


@dataclass(frozen=True)
class Target:
    """What one attempt pushes: our invoice, its organization, and the lines Stripe should
    hold (one per item, or grouped past Stripe's 250-item cap)."""

    invoice: tables.Invoice
    organization: tables.Organization
    lines: list[RemoteLine]
    memory: memory.Memory = field(default_factory=memory.Memory)

    @property
    def public_id(self) -> str:
        return self.invoice.public_id

    @property
    def invoice_id(self) -> int:
        assert self.invoice.id is not None
        return self.invoice.id


@dataclass
class Progress:
    """The step an attempt is on, for its history row when it fails."""

    step: str = "load"


def load_target(session: Session, invoice_id: int) -> Target:
    with session.begin():
        invoice = session.get_one(tables.Invoice, invoice_id, populate_existing=True)
        organization = session.get_one(
            tables.Organization, invoice.organization_id, populate_existing=True
        )
        items = session.exec(
            select(tables.InvoiceItem)
            .where(col(tables.InvoiceItem.invoice_id) == invoice_id)
            .order_by(col(tables.InvoiceItem.id))
        ).all()
        remembered = memory.load(session, invoice_id)
    # Detached: the steps update these copies as ids become known, and every write to the
    # database is an explicit statement in a short transaction, never a flush of ORM state.
    session.expunge_all()
    lines = remote_lines(items, period=(invoice.period_start, invoice.period_end))
    return Target(invoice=invoice, organization=organization, lines=lines, memory=remembered)


# The steps --------------------------------------------------------------------------------


def ensure_customer(
    session: Session, stripe: StripeGateway, org: tables.Organization, *, key: str | None = None
) -> str:
    """The organization's Stripe customer id, found (consistent list) or created once."""
    return lookup.ensure_customer(session, stripe, org, key=key)


def find_remote_invoice(
    session: Session, stripe: StripeGateway, target: Target
) -> RemoteInvoice | None:
    """The Stripe invoice carrying metadata[invoice_id] (consistent list under our customer),
    stored at once if found. No customer on Stripe yet: no invoice can exist either."""
    org = target.organization
    customer = org.stripe_customer_id or lookup.find_customer(stripe, org)
    if customer is None:
        return None
    found = lookup.find_invoice(stripe, target.invoice, customer, replaced=target.memory.replaced)
    if found is not None:
        _store_invoice_id(session, target, found.id)
    return found


def create_remote_invoice(
    session: Session, stripe: StripeGateway, target: Target, customer: str
) -> RemoteInvoice:
    """A draft Stripe invoice (auto_advance off, send_invoice, a due date in the future, no
    pending items). A customer Stripe no longer has is recreated once, then the create is
    sent again; a second miss fails the invoice like any invalid request."""
    inv = target.invoice
    assert inv.number is not None and inv.due_date is not None
    with session.begin():
        due = due_dates.choose(
            session, target.invoice_id, inv.due_date, today=datetime.now(UTC).date()
        )

    def create(customer_id: str, *, suffix: str = "") -> RemoteInvoice:
        assert inv.number is not None
        return stripe.create_invoice(
            public_id=inv.public_id,
            number=inv.number,
            customer=customer_id,
            currency=inv.currency,
            due=due,
            key=target.memory.key("create", keys.create(inv.public_id)) + suffix,
        )

    try:
        remote = create(customer)
    except Exception as e:
        if not lookup.is_missing_customer(e):
            raise
        customer = lookup.ensure_customer(session, stripe, target.organization, replacing=customer)
        # Other parameters need another key: the first one may hold the refusal.
        remote = create(customer, suffix=f":for:{customer}")
    _store_invoice_id(session, target, remote.id)
    return remote


def add_missing_lines(
    session: Session,
    stripe: StripeGateway,
    target: Target,
    remote: RemoteInvoice,
    *,
    chunk_size: int,
    known_empty: bool,
) -> RemoteInvoice:
    """Add, in chunks, the lines the draft does not hold yet (by metadata line_item_id or
    group). `known_empty`: the draft was created in this attempt, so there is nothing to list.

    The same chunk always goes with the same key and the same parameters, so a chunk whose
    answer was lost replays instead of adding its lines twice; after the key expired, the
    listing is what keeps it from being sent again.
    """
    present: list[RemoteLineRef] = [] if known_empty else stripe.list_lines(remote.id)
    _check_no_strangers(target, remote, present)
    have = {ref.key for ref in present}
    for index, start in enumerate(range(0, len(target.lines), chunk_size)):
        chunk = target.lines[start : start + chunk_size]
        missing = [line for line in chunk if line.key not in have]
        if not missing:
            continue
        # add_lines is atomic, so a chunk is normally all there or all missing. Partly there
        # means someone edited the draft on Stripe: the rest goes under a key of its own.
        subset = None if len(missing) == len(chunk) else [m.key for m in missing]
        remote = stripe.add_lines(
            remote.id,
            missing,
            key=target.memory.key("lines", keys.lines(target.public_id, index, subset=subset)),
        )
    _store_line_ids(session, target, [*present, *remote.lines])
    return remote


def finalize_remote(
    session: Session, stripe: StripeGateway, target: Target, remote: RemoteInvoice
) -> RemoteInvoice:
    """Finalize the draft (auto_advance stays off: nothing is e-mailed or charged by Stripe)."""
    finalized = stripe.finalize(
        remote.id,
        public_id=target.public_id,
        key=target.memory.key("finalize", keys.finalize(target.public_id)),
    )
    _store_line_ids(session, target, finalized.lines)
    _store_links(session, target, finalized)
    return finalized


def verify_remote(
    session: Session,
    stripe: StripeGateway,
    target: Target,
    remote: RemoteInvoice,
    *,
    list_lines: bool,
) -> None:
    """Stripe's invoice must be finalized, in our currency, with our total and our number of
    lines (and, when `list_lines`, exactly our lines, each with our amount); else Mismatch,
    which FAILS the invoice with code MISMATCH: a finalized Stripe invoice cannot be edited."""
    inv = target.invoice
    problems: list[str] = []
    if remote.status not in SETTLED_REMOTE:
        problems.append(f"its status is {remote.status}")
    if remote.currency.lower() != inv.currency.strip().lower():
        problems.append(f"its currency is {remote.currency}, ours {inv.currency}")
    org_customer = target.organization.stripe_customer_id
    if remote.customer and org_customer and remote.customer != org_customer:
        problems.append(f"its customer is {remote.customer}, ours {org_customer}")
    if remote.total != inv.total_cents:
        problems.append(f"its total is {remote.total}, ours {inv.total_cents}")
    count = remote.line_count
    if list_lines or remote.lines_has_more:
        # Stripe embeds 10 lines and declares no count: past 10, counting is paging.
        listed = stripe.list_lines(remote.id)
        _store_line_ids(session, target, listed)
        count = len(listed)
        if list_lines:
            problems += _line_differences(target.lines, listed)
    if count != len(target.lines):
        problems.append(f"it has {count} lines, ours {len(target.lines)}")
    if problems:
        raise Mismatch(
            f"Stripe invoice {remote.id} differs from ours: {'; '.join(problems)}. A finalized "
            "Stripe invoice cannot be edited: void it on Stripe, then resync to send it again"
        )


def void_remote(
    session: Session,
    stripe: StripeGateway,
    target: Target,
    remote: RemoteInvoice | None,
    *,
    chunk_size: int,
) -> None:
    """Voided here, so void it on Stripe. Never reached Stripe: nothing to do remotely."""
    if remote is None or remote.status == "void":
        return
    if remote.status == "draft":
        # Stripe voids only finalized invoices. The draft is completed first so the voided
        # record on Stripe shows what was voided, then finalized (auto_advance off: nothing is
        # sent) and voided.
        remote = add_missing_lines(
            session, stripe, target, remote, chunk_size=chunk_size, known_empty=False
        )
        remote = finalize_remote(session, stripe, target, remote)
    if remote.status in ("open", "uncollectible"):
        stripe.void(
            remote.id,
            public_id=target.public_id,
            key=target.memory.key("void", keys.void(target.public_id)),
        )
    elif remote.status == "paid" and remote.total != 0:
        raise Mismatch(
            f"Stripe invoice {remote.id} is paid, so Stripe cannot void it; refund it there"
        )
    # A paid zero-total invoice collects nothing: as good as void.


# The order of the steps ---------------------------------------------------------------------


def push(
    session: Session,
    stripe: StripeGateway,
    target: Target,
    *,
    claimed_before: bool,
    verify_requested: bool,
    chunk_size: int,
    progress: Progress,
) -> None:
    """Run the steps this invoice still needs; raises on the first failure (classified by the
    caller). `claimed_before`: an earlier attempt may have reached Stripe."""
    inv = target.invoice
    remote: RemoteInvoice | None = None
    if inv.stripe_invoice_id:
        progress.step = "retrieve"
        remote = remote_gone.retrieve(stripe, inv.stripe_invoice_id)
    elif claimed_before or verify_requested:
        progress.step = "lookup"
        remote = find_remote_invoice(session, stripe, target)
    if remote is not None:
        # Voided on Stripe by hand: an operator's decision to make, never a silent recreate.
        remote_gone.check_not_voided(remote, voided_here=inv.status == InvoiceStatus.VOID)

    if inv.status == InvoiceStatus.VOID:
        notes = credit_notes.pending(session, target.invoice_id) if remote else []
        if remote is not None and remote.status != "draft" and notes:
            # Its credit notes were voided here first (a trigger insists); so on Stripe.
            progress.step = "credit_notes"
            credit_notes.push(session, stripe, remote.id, notes)
        progress.step = "void"
        void_remote(session, stripe, target, remote, chunk_size=chunk_size)
        return

    created_now = remote is None
    if remote is None:
        progress.step = "customer"
        customer = ensure_customer(
            session,
            stripe,
            target.organization,
            key=target.memory.key("customer", keys.customer(target.organization.public_id)),
        )
        progress.step = "create"
        remote = create_remote_invoice(session, stripe, target, customer)
    if remote.status == "draft":
        progress.step = "lines"
        remote = add_missing_lines(
            session, stripe, target, remote, chunk_size=chunk_size, known_empty=created_now
        )
        progress.step = "finalize"
        remote = finalize_remote(session, stripe, target, remote)
    progress.step = "verify"
    # The finalize answer carries the total and the line count, so the first push verifies
    # for free; a forced re-verify lists every line (a call per 100) and compares them one by one.
    verify_remote(session, stripe, target, remote, list_lines=verify_requested)
    # Read now, not with the invoice: the lines' Stripe ids are known only after the steps
    # above. Credit notes issued before payment go first: on Stripe they lower what is due,
    # and after the pay step Stripe would take them as post-payment credit.
    notes = credit_notes.pending(session, target.invoice_id)
    if notes:
        progress.step = "credit_notes"
        credit_notes.push(session, stripe, remote.id, [n for n in notes if not n.post_payment])

    if not created_now:  # an adopted or resumed remote invoice: its links may be new to us
        _store_links(session, target, remote)
    if inv.status == InvoiceStatus.PAID and remote.status in ("open", "uncollectible"):
        # Paid here (markInvoicePaid): tell Stripe, so it stops collecting. Paid on Stripe
        # first (a webhook made ours PAID), the remote is already paid and nothing is sent.
        progress.step = "pay"
        stripe.pay_out_of_band(remote.id, key=target.memory.key("pay", keys.pay(target.public_id)))
    if notes:
        progress.step = "credit_notes"
        credit_notes.push(session, stripe, remote.id, [n for n in notes if n.post_payment])


# Helpers ------------------------------------------------------------------------------------


def _store_invoice_id(session: Session, target: Target, remote_id: str) -> None:
    with session.begin():
        remote_ids.store_invoice_id(session, target.invoice_id, remote_id)
    target.invoice.stripe_invoice_id = remote_id


def _store_links(session: Session, target: Target, remote: RemoteInvoice) -> None:
    with session.begin():
        remote_ids.store_links(
            session,
            target.invoice_id,
            hosted_invoice_url=remote.hosted_invoice_url,
            pdf_url=remote.invoice_pdf,
        )


def _store_line_ids(session: Session, target: Target, refs: Iterable[RemoteLineRef]) -> None:
    ids = {r.key: r.id for r in refs if r.key_field == LINE_KEY and r.key}
    if ids:
        with session.begin():
            remote_ids.store_line_ids(session, target.invoice_id, ids)


def _check_no_strangers(
    target: Target, remote: RemoteInvoice, present: Sequence[RemoteLineRef]
) -> None:
    """A draft may only hold our lines, each once: anything else would change the total."""
    wanted = {line.key for line in target.lines}
    counts = Counter(ref.key for ref in present)
    strangers = [ref.id for ref in present if ref.key not in wanted]
    doubles = [key for key, n in counts.items() if n > 1]
    if strangers or doubles:
        raise Mismatch(
            f"Stripe draft {remote.id} holds lines we did not send ({len(strangers)}) or sent "
            f"twice ({len(doubles)}); delete them on Stripe, then resync"
        )


def _line_differences(wanted: Sequence[RemoteLine], listed: Sequence[RemoteLineRef]) -> list[str]:
    have = Counter(ref.key for ref in listed)
    amounts = {ref.key: ref.amount for ref in listed}
    missing = [line.key for line in wanted if have[line.key] == 0]
    wrong = [line.key for line in wanted if have[line.key] and amounts[line.key] != line.amount]
    extra = sum(n for key, n in have.items() if key not in {w.key for w in wanted}) + sum(
        n - 1 for n in have.values() if n > 1
    )
    out = []
    if missing:
        out.append(f"{len(missing)} of our lines are missing (first: {missing[0]})")
    if wrong:
        out.append(f"{len(wrong)} lines have other amounts (first: {wrong[0]})")
    if extra:
        out.append(f"{extra} lines are not ours or are doubled")
    return out
