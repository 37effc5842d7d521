"""Credit notes in GraphQL: the types, their loaders and inputs, and issueCreditNote /
voidCreditNote. The rules live in models/invoices/credit_notes.py; everything here maps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlmodel import Session, col, select

from gql.core import permissions
from gql.core.context import Info
from gql.core.dataloaders import SessionLoader
from gql.core.enums import publish
from gql.core.errors import UserError, bad_input
from gql.core.idempotency import register_entity
from gql.core.money import Money, money
from gql.core.mutation import mutation
from gql.core.pagination import (
    After,
    Before,
    Edge,
    First,
    Last,
    PageInfo,
    id_cursor,
    page,
    page_info,
    parse_id_cursor,
    window,
)
from gql.core.permissions import IsPlatformAdmin
from gql.core.scalars import BigInt, DecimalString
from models import tables
from models.errors import DomainError, NotFound
from models.invoices import credit_notes, outage_credits
from models.invoices.credit_notes import CreditLineInput, Settlement
from models.tables import CreditNoteReason, CreditNoteStatus

publish(
    CreditNoteReason,
    name="CreditNoteReason",
    description="Why a credit note was issued (Stripe's reasons).",
    values={
        CreditNoteReason.DUPLICATE: "The customer was charged twice for the same thing.",
        CreditNoteReason.FRAUDULENT: "The charge was fraudulent.",
        CreditNoteReason.ORDER_CHANGE: "What was ordered changed (a wrong price, a goodwill "
        "or outage credit).",
        CreditNoteReason.PRODUCT_UNSATISFACTORY: "The service fell short.",
    },
)
publish(
    CreditNoteStatus,
    name="CreditNoteStatus",
    description="Lifecycle of a credit note.",
    values={
        CreditNoteStatus.ISSUED: "In force: counted against its invoice.",
        CreditNoteStatus.VOID: "Voided: counts nowhere; its amount is given back.",
    },
)


# --- Loaders ----------------------------------------------------------------------------------


class CreditedByInvoiceIdLoader(SessionLoader[int, int]):
    def batch_load(self, keys: list[int]) -> Sequence[int]:
        found = credit_notes.credited_by_invoice(self.session, keys)
        return [found.get(k, 0) for k in keys]


class CreditNotesByInvoiceIdLoader(SessionLoader[int, list[tables.CreditNote]]):
    def batch_load(self, keys: list[int]) -> Sequence[list[tables.CreditNote]]:
        cn = tables.CreditNote
        out: dict[int, list[tables.CreditNote]] = defaultdict(list)
        for row in self.session.exec(
            select(cn).where(col(cn.invoice_id).in_(keys)).order_by(col(cn.id))
        ):
            out[row.invoice_id].append(row)
        return [out[k] for k in keys]


class CreditNoteLinesLoader(SessionLoader[int, list[tables.CreditNoteLine]]):
    def batch_load(self, keys: list[int]) -> Sequence[list[tables.CreditNoteLine]]:
        found = credit_notes.lines_of(self.session, keys)
        return [found[k] for k in keys]


class ItemPublicIdLoader(SessionLoader[int, str]):
    def batch_load(self, keys: list[int]) -> Sequence[str]:
        item = tables.InvoiceItem
        found = dict(
            self.session.execute(
                select(item.id, item.public_id).where(col(item.id).in_(keys))
            ).all()
        )
        return [found[k] for k in keys]


class InvoicePublicIdLoader(SessionLoader[int, str]):
    def batch_load(self, keys: list[int]) -> Sequence[str]:
        inv = tables.Invoice
        found = dict(
            self.session.execute(select(inv.id, inv.public_id).where(col(inv.id).in_(keys))).all()
        )
        return [found[k] for k in keys]


# --- Types ------------------------------------------------------------------------------------


@strawberry.type(description="One line of a credit note.")
class CreditNoteLine:
    row: strawberry.Private[tables.CreditNoteLine]
    siblings: strawberry.Private[Sequence[tables.CreditNoteLine]]
    description: str = strawberry.field(description="What is credited, in words.")
    quantity: DecimalString | None = strawberry.field(
        description="Quantity credited, in the invoice line's unit, when credited by quantity."
    )
    amount: Money = strawberry.field(
        description="Amount credited (positive), rounded half-even once for this line."
    )

    @strawberry.field(
        description="Public id (li_...) of the invoice line credited; null for a custom line."
    )
    def line_item_id(self, info: Info) -> strawberry.ID | None:
        if self.row.invoice_item_id is None:
            return None
        ids = [s.invoice_item_id for s in self.siblings if s.invoice_item_id is not None]
        return strawberry.ID(
            info.context.loader(ItemPublicIdLoader).load(self.row.invoice_item_id, ids)
        )


@strawberry.type(
    description="A correction of a finalized invoice: an immutable document of its own, "
    "issued against the invoice and voidable (which gives its amount back)."
)
class CreditNote:
    row: strawberry.Private[tables.CreditNote]
    page: strawberry.Private[Sequence[tables.CreditNote]]
    id: strawberry.ID = strawberry.field(description="Opaque public id (cn_...).")
    number: str = strawberry.field(
        description="The invoice's number and the credit note's place: ACME-0014-CN1."
    )
    status: CreditNoteStatus = strawberry.field(description="ISSUED or VOID.")
    reason: CreditNoteReason = strawberry.field(description="Why it was issued.")
    memo: str | None = strawberry.field(description="Free text given when issued.")
    total: Money = strawberry.field(description="Sum of the lines' amounts.")
    refund: Money = strawberry.field(
        description="Refunded to the customer (paid invoices only; Stripe's refund_amount)."
    )
    customer_balance: Money = strawberry.field(
        description="Credited to the customer's balance, used by the next invoice (Stripe's "
        "credit_amount)."
    )
    out_of_band: Money = strawberry.field(
        description="Settled outside Stripe (Stripe's out_of_band_amount)."
    )
    issued_at: datetime = strawberry.field(description="When it was issued.")
    voided_at: datetime | None = strawberry.field(description="When it was voided, if it was.")
    stripe_credit_note_id: str | None = strawberry.field(
        description="Stripe's credit note id, once the sync created it."
    )

    @classmethod
    def from_row(cls, r: tables.CreditNote, page: Sequence[tables.CreditNote] = ()) -> CreditNote:
        cur = r.currency.strip()
        return cls(
            row=r,
            page=page or (r,),
            id=strawberry.ID(r.public_id),
            number=r.number,
            status=CreditNoteStatus(r.status),
            reason=CreditNoteReason(r.reason),
            memo=r.memo,
            total=money(r.total_cents, cur),
            refund=money(r.refund_cents, cur),
            customer_balance=money(r.credit_balance_cents, cur),
            out_of_band=money(r.out_of_band_cents, cur),
            issued_at=r.issued_at,
            voided_at=r.voided_at,
            stripe_credit_note_id=r.stripe_credit_note_id,
        )

    @strawberry.field(description="The lines, in the order they were given.")
    def lines(self, info: Info) -> list[CreditNoteLine]:
        rows = info.context.loader(CreditNoteLinesLoader).load(
            self.row.id or 0, [r.id or 0 for r in self.page]
        )
        return [
            CreditNoteLine(
                row=r,
                siblings=rows,
                description=r.description,
                quantity=DecimalString(str(r.quantity)) if r.quantity is not None else None,
                amount=money(r.amount_cents, self.row.currency.strip()),
            )
            for r in rows
        ]

    @strawberry.field(description="Public id (inv_...) of the invoice credited.")
    def invoice_id(self, info: Info) -> strawberry.ID:
        return strawberry.ID(
            info.context.loader(InvoicePublicIdLoader).load(
                self.row.invoice_id, [r.invoice_id for r in self.page]
            )
        )


@strawberry.type(description="A page of credit notes, newest first.")
class CreditNoteConnection:
    edges: list[Edge[CreditNote]] = strawberry.field(description="Rows with their cursors.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")

    @strawberry.field(description="The rows, without cursors.")
    def nodes(self) -> list[CreditNote]:
        return [e.node for e in self.edges]


def organization_credit_notes(
    info: Info,
    organization_id: int,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> CreditNoteConnection:
    """Newest first by id (ix_credit_notes_organization_id_id)."""
    w = window(first, after, last, before)
    cn = tables.CreditNote
    stmt = select(cn).where(cn.organization_id == organization_id)
    if w.after:
        stmt = stmt.where(col(cn.id) < parse_id_cursor(w.after))
    if w.before:
        stmt = stmt.where(col(cn.id) > parse_id_cursor(w.before))
    stmt = stmt.order_by(col(cn.id) if w.backward else col(cn.id).desc()).limit(w.size + 1)
    rows, more = page(list(info.context.session.exec(stmt)), w)
    edges = [Edge(cursor=id_cursor(r.id or 0), node=CreditNote.from_row(r, rows)) for r in rows]
    return CreditNoteConnection(
        edges=edges, page_info=page_info([e.cursor for e in edges], more=more, w=w)
    )


def resolve_organization_credit_notes(
    parent: strawberry.Parent[tables.Organization],
    info: Info,
    first: First = None,
    after: After = None,
    last: Last = None,
    before: Before = None,
) -> CreditNoteConnection:
    assert parent.id is not None
    return organization_credit_notes(info, parent.id, first, after, last, before)


# --- Inputs and mutations ---------------------------------------------------------------------


@strawberry.input(
    description="One credit note line: `lineItemId` with `quantity` or `amount`, or "
    "`description` with `amount` (a custom line)."
)
class CreditNoteLineInput:
    line_item_id: strawberry.ID | None = strawberry.field(
        default=None, description="The invoice line credited (li_...); null for a custom line."
    )
    quantity: DecimalString | None = strawberry.field(
        default=None,
        description="Quantity to credit, in the line's unit; the amount is quantity x unit "
        "price, rounded half-even once (all that is left of a line credits exactly its rest).",
    )
    amount: BigInt | None = strawberry.field(
        default=None, description="Amount to credit in minor units (positive)."
    )
    description: str | None = strawberry.field(
        default=None,
        description="Required for a custom line; defaults to the invoice line's description.",
    )

    def to_domain(self) -> CreditLineInput:
        return CreditLineInput(
            line_item_id=str(self.line_item_id) if self.line_item_id is not None else None,
            quantity=str(self.quantity) if self.quantity is not None else None,
            amount_cents=int(self.amount) if self.amount is not None else None,
            description=self.description,
        )


@strawberry.input(
    description="How a PAID invoice's credit is settled (Stripe's rules): the three amounts "
    "sum to the credit note's total. Not given for unpaid invoices."
)
class SettlementInput:
    refund: BigInt = strawberry.field(
        default=BigInt(0), description="Refunded, minor units (refund_amount)."
    )
    customer_balance: BigInt = strawberry.field(
        default=BigInt(0), description="To the customer's balance, minor units (credit_amount)."
    )
    out_of_band: BigInt = strawberry.field(
        default=BigInt(0), description="Settled outside Stripe, minor units (out_of_band_amount)."
    )


@strawberry.input(description="A credit note to issue against a finalized invoice.")
class IssueCreditNoteInput:
    invoice_id: strawberry.ID = strawberry.field(description="Public id (inv_...) or number.")
    reason: CreditNoteReason = strawberry.field(description="Why (Stripe's reasons).")
    memo: str | None = strawberry.field(default=None, description="Free text, 500 characters.")
    lines: list[CreditNoteLineInput] = strawberry.field(description="1 to 250 lines.")
    settlement: SettlementInput | None = strawberry.field(
        default=None, description="Required when the invoice is PAID; absent otherwise."
    )


@strawberry.input(description="The credit note to void.")
class VoidCreditNoteInput:
    credit_note_id: strawberry.ID = strawberry.field(description="Public id (cn_...) or number.")


@strawberry.type(description="Result of a credit note mutation.")
class CreditNotePayload:
    credit_note: CreditNote | None = strawberry.field(
        default=None, description="The credit note after the change."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )


def _load(session: Session, credit_note_id: int) -> CreditNote | None:
    row = session.get(tables.CreditNote, credit_note_id)
    return CreditNote.from_row(row) if row else None


register_entity(CreditNote, "credit_note", key=lambda c: c.row.id or 0, load=_load)


def credit_note_or_not_found(info: Info, ref: str) -> tables.CreditNote:
    """By public id (cn_...) or number, among what the viewer may see."""
    cn = tables.CreditNote
    match = cn.public_id == ref if "_" in ref else cn.number == ref.upper()
    row = info.context.session.exec(
        select(cn).where(match, *permissions.visible_to(info.context.viewer, cn.organization_id))
    ).first()
    if row is None:
        raise NotFound(f"no credit note {ref!r}", field=("creditNoteId",))
    return row


def _enum_value(value: Any) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


@strawberry.type
class CreditNoteMutations:
    @mutation(
        CreditNotePayload,
        description="Issue a credit note on an OPEN, UNCOLLECTIBLE or PAID invoice (admin); "
        "synced to Stripe once the invoice is there.",
        permission_classes=[IsPlatformAdmin],
    )
    def issue_credit_note(self, info: Info, input: IssueCreditNoteInput) -> CreditNotePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = permissions.invoice_or_not_found(ctx, str(input.invoice_id))
            given = input.settlement
            note = credit_notes.issue(
                s,
                inv,
                reason=_enum_value(input.reason),
                memo=input.memo,
                lines=[line.to_domain() for line in input.lines],
                settlement=Settlement(
                    int(given.refund), int(given.customer_balance), int(given.out_of_band)
                )
                if given is not None
                else None,
                created_by=f"token:{ctx.viewer.token_id}",
                now=ctx.now(),
                rollup_shards=ctx.rollup_shards,
            )
        ctx.enqueue_sync(note.invoice_id)  # after commit; the sweeper covers a lost enqueue
        return CreditNotePayload(credit_note=CreditNote.from_row(note))

    @mutation(
        CreditNotePayload,
        description="ISSUED -> VOID: the amount is given back, and voided on Stripe (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def void_credit_note(self, info: Info, input: VoidCreditNoteInput) -> CreditNotePayload:
        ctx = info.context
        with ctx.transaction() as s:
            note = credit_notes.void(
                s,
                credit_note_or_not_found(info, str(input.credit_note_id)),
                now=ctx.now(),
                rollup_shards=ctx.rollup_shards,
            )
        ctx.enqueue_sync(note.invoice_id)
        return CreditNotePayload(credit_note=CreditNote.from_row(note))


# --- Outage credits ---------------------------------------------------------------------------


@strawberry.type(description="What an outage credit gave (or would give) one organization.")
class OutageCreditOrganization:
    slug: str = strawberry.field(description="The organization credited.")
    credited: Money = strawberry.field(description="Credited, in one currency.")
    credit_notes: int = strawberry.field(description="Credit notes issued on finalized invoices.")
    draft_lines: int = strawberry.field(description="CREDIT lines added to open drafts.")


def _organizations(rows: Sequence[dict[str, Any]]) -> list[OutageCreditOrganization]:
    return [
        OutageCreditOrganization(
            slug=r["slug"],
            credited=money(int(r["cents"]), r["currency"]),
            credit_notes=int(r["credit_notes"]),
            draft_lines=int(r["draft_lines"]),
        )
        for r in rows
    ]


@strawberry.type(description="An outage credited once, under its key.")
class OutageIncident:
    row: strawberry.Private[tables.OutageIncident]
    key: str = strawberry.field(description="The incident's idempotency key.")
    region: str = strawberry.field(description="Region of the outage.")
    window_from: datetime = strawberry.field(description="Start of the window (inclusive).")
    window_to: datetime = strawberry.field(description="End of the window (exclusive).")
    percent: int = strawberry.field(description="Share of the usage credited, 1 to 100.")
    credit_notes: int = strawberry.field(description="Credit notes issued.")
    draft_lines: int = strawberry.field(description="CREDIT lines added to drafts.")
    organizations: list[OutageCreditOrganization] = strawberry.field(
        description="Per organization and currency, what was credited."
    )

    @classmethod
    def from_row(cls, r: tables.OutageIncident) -> OutageIncident:
        return cls(
            row=r,
            key=r.key,
            region=r.region,
            window_from=r.window_from,
            window_to=r.window_to,
            percent=r.percent,
            credit_notes=r.credit_notes,
            draft_lines=r.draft_lines,
            organizations=_organizations(r.summary),
        )


def _load_incident(session: Session, incident_id: int) -> OutageIncident | None:
    row = session.get(tables.OutageIncident, incident_id)
    return OutageIncident.from_row(row) if row else None


register_entity(OutageIncident, "outage_incident", key=lambda i: i.row.id or 0, load=_load_incident)


@strawberry.input(description="An outage to credit from the usage events in its window.")
class CreditOutageInput:
    region: str = strawberry.field(description="Region code, such as iad.")
    window_from: datetime = strawberry.field(description="Start of the window (inclusive).")
    window_to: datetime = strawberry.field(description="End (exclusive); at most a month later.")
    products: str | None = strawberry.field(
        default=None, description="Product glob such as machines-*; every product when null."
    )
    percent: int = strawberry.field(default=100, description="Share credited, 1 to 100.")
    key: str | None = strawberry.field(
        default=None,
        description="The incident's key; by default derived from region, window, products and "
        "percent. A key already credited credits nothing.",
    )


@strawberry.type(description="Result of creditOutage.")
class CreditOutagePayload:
    incident: OutageIncident | None = strawberry.field(
        default=None, description="The incident, as credited now or by an earlier run."
    )
    already_done: bool = strawberry.field(
        default=False, description="True when the key had been credited before: nothing new."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )


def _incident_input(input: CreditOutageInput) -> outage_credits.Incident:
    return outage_credits.Incident.parse(
        region=input.region,
        start=input.window_from,
        end=input.window_to,
        products=input.products,
        percent=input.percent,
        key=input.key,
    )


@strawberry.type
class OutageCreditMutations:
    @mutation(
        CreditOutagePayload,
        description="Credit every organization for exactly the usage its events recorded in a "
        "region and window: credit notes on finalized invoices, CREDIT lines on drafts; once "
        "per incident key (admin). `outageCreditPreview` shows the same without writing.",
        permission_classes=[IsPlatformAdmin],
    )
    def credit_outage(self, info: Info, input: CreditOutageInput) -> CreditOutagePayload:
        ctx = info.context
        incident = _incident_input(input)
        with ctx.transaction() as s:
            plan = outage_credits.run(
                s,
                incident,
                dry_run=False,
                created_by=f"token:{ctx.viewer.token_id}",
                now=ctx.now(),
                rollup_shards=ctx.rollup_shards,
            )
            row = s.exec(
                select(tables.OutageIncident).where(tables.OutageIncident.key == incident.key)
            ).one()
        # No enqueue per invoice: the credit notes' invoices are due now, and the sweeper
        # takes them in bounded batches.
        return CreditOutagePayload(
            incident=OutageIncident.from_row(row), already_done=plan.already_done
        )


@strawberry.type
class OutageCreditQueries:
    @strawberry.field(
        description="What creditOutage would credit, per organization, writing nothing (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def outage_credit_preview(
        self,
        info: Info,
        input: Annotated[
            CreditOutageInput,
            strawberry.argument(description="The incident to preview: region, window, products."),
        ],
    ) -> list[OutageCreditOrganization]:
        try:
            incident = _incident_input(input)
        except DomainError as e:  # a query has no userErrors: the reason, as a client error
            raise bad_input(e.message) from None
        plan = outage_credits.run(
            info.context.session,
            incident,
            dry_run=True,
            created_by="preview",
            now=info.context.now(),
            rollup_shards=info.context.rollup_shards,
        )
        return _organizations(
            [
                {
                    "slug": o.slug,
                    "currency": o.currency,
                    "cents": o.cents,
                    "credit_notes": o.credit_notes,
                    "draft_lines": o.draft_lines,
                }
                for o in plan.organizations
            ]
        )
