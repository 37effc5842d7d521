// The reference dashboard: spend by month, the invoice list with status and sync badges, an
// invoice's lines grouped by app and by region, an organization's spend alerts, and, for
// operators, the last month-end close and failed syncs with a Resync button. Everything goes
// through the public GraphQL API with the user's own token.
import { ApiError, gql, takeTokenFromFragment, token } from "./api.js";
import { renderCharts } from "./chart.js";
import { escapeHtml, formatCents, shortDate, sumCents, when } from "./format.js";

const PAGE_SIZE = 10;
const main = document.getElementById("main");
const state = { viewer: null, years: defaultYears(), scope: "", cursors: [null], failedCursor: null };

function defaultYears() {
  const y = new Date().getUTCFullYear();
  return [y - 1, y];
}

const MONEY = "cents currency formatted";
const SYNC = `status attempts lastAttemptAt nextAttemptAt syncedAt
  lastError { code message httpStatus requestId }`;

const Q_VIEWER = `{ viewer { isAdmin organizations { slug name } } }`;
const Q_SUMMARY = `query($years: [Int!]!, $org: String) {
  monthlySummary(years: $years, organizationSlug: $org) { month currency invoiceCount complete total { ${MONEY} } } }`;
const Q_INVOICES = `query($first: Int!, $after: String, $filter: InvoiceFilter) {
  invoices(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id number status periodStart periodEnd total { ${MONEY} } organization { slug }
      syncState { ${SYNC} } } } }`;
const Q_INVOICE = `query($id: ID!, $after: String) { invoice(id: $id) {
  id number status currency periodStart periodEnd finalizedAt dueDate paidAt voidedAt
  subtotal { ${MONEY} } total { ${MONEY} } lineItemCount stripeInvoiceId organization { slug name }
  creditedTotal { ${MONEY} } amountDue { ${MONEY} }
  creditNotes { id number status reason memo issuedAt voidedAt stripeCreditNoteId total { ${MONEY} }
    refund { ${MONEY} } customerBalance { ${MONEY} } outOfBand { ${MONEY} } }
  hostedInvoiceUrl pdfUrl
  payment { status attemptCount lastFailureMessage nextAttemptAt }
  syncState { ${SYNC} remoteDueDate history(last: 5) { startedAt step outcome errorCode errorMessage httpStatus } }
  lineItems(first: 100, after: $after) { pageInfo { hasNextPage endCursor }
    nodes { id kind description product app region unit quantity unitPrice
      displayQuantity displayUnit displayUnitPrice amount { ${MONEY} } } } } }`;
const GROUP = `name total { ${MONEY} } projectedTotal { ${MONEY} }`;
const Q_SO_FAR = `query($org: String!) { organization(slug: $org) { name upcomingInvoice {
  asOf periodStart periodEnd total { ${MONEY} } projectedTotal { ${MONEY} } invoice { id }
  projection { low { ${MONEY} } high { ${MONEY} } }
  lines { kind }
  byProduct { ${GROUP} } byApp { ${GROUP} } byRegion { ${GROUP} } } }
  prices(currency: null) { product formatted effectiveFrom } }`;
const RUN = "period startedAt finishedAt drafts finalized skipped failed pending lastError";
// billingRun takes a period; the last close is the previous month's (beat closes it two hours
// into the new month), or the one before while that has not run yet.
const Q_LAST_CLOSE = `query($p1: String!, $p2: String!) {
  last: billingRun(period: $p1) { ${RUN} } before: billingRun(period: $p2) { ${RUN} }
  waiting: invoices(first: 0, filter: { syncStatus: [PENDING, SYNCING, RETRYING] }) { totalCount } }`;
const Q_ALERTS = `query($org: String!) { organization(slug: $org) {
  spendAlerts { id kind threshold { ${MONEY} } triggeredAt period } } }`;
const M_RESYNC = `mutation($id: ID!) { resyncInvoice(input: { invoiceId: $id }) {
  invoice { id syncState { ${SYNC} } } userErrors { field code message } } }`;

function badge(kind, value) {
  const text = String(value ?? "").toLowerCase().replace(/_/g, " ");
  return `<span class="badge ${kind}-${escapeHtml(String(value).toLowerCase())}" data-${kind}="${escapeHtml(value)}">${escapeHtml(text)}</span>`;
}

function syncBadge(sync) {
  const title = sync.lastError ? `${sync.lastError.code ?? ""} ${sync.lastError.message ?? ""}` : "";
  return `<span title="${escapeHtml(title)}">${badge("sync", sync.status)}</span>`;
}

function showError(error) {
  if (error instanceof ApiError && error.code === "UNAUTHENTICATED") {
    token.clear();
    return renderSignIn("That token was not accepted.");
  }
  main.innerHTML = `<div class="card error">Something went wrong: ${escapeHtml(error.message)}</div>`;
}

function renderSignIn(message) {
  document.getElementById("who").textContent = "";
  document.getElementById("signout").hidden = true;
  main.replaceChildren(document.getElementById("signin").content.cloneNode(true));
  if (message) {
    const p = document.getElementById("signin-error");
    p.textContent = message;
    p.hidden = false;
  }
  document.getElementById("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token.set(document.getElementById("token").value.trim());
    start();
  });
}

async function start() {
  if (!token.get()) return renderSignIn();
  // A new sign-in starts from the first page of the whole scope.
  Object.assign(state, { viewer: null, scope: "", cursors: [null] });
  try {
    state.viewer = (await gql(Q_VIEWER)).viewer;
  } catch (error) {
    return showError(error);
  }
  const orgs = state.viewer.organizations.map((o) => o.slug).join(", ");
  document.getElementById("who").textContent = state.viewer.isAdmin ? "operator (all organizations)" : orgs;
  document.getElementById("signout").hidden = false;
  route();
}

function route() {
  const match = location.hash.match(/^#\/invoices\/([^/]+)$/);
  (match ? renderInvoice(decodeURIComponent(match[1])) : renderHome()).catch(showError);
}

async function renderHome() {
  const years = [...new Set(state.years)].sort();
  const thisYear = new Date().getUTCFullYear();
  const yearBoxes = [thisYear - 2, thisYear - 1, thisYear].map((y) =>
    `<label><input type="checkbox" name="year" value="${y}" ${years.includes(y) ? "checked" : ""}> ${y}</label>`).join(" ");
  const scopeSelect = state.viewer.isAdmin
    ? `<label>Scope <select id="scope"><option value="">Whole platform</option>${state.viewer.organizations
        .map((o) => `<option value="${escapeHtml(o.slug)}" ${state.scope === o.slug ? "selected" : ""}>${escapeHtml(o.name)}</option>`).join("")}</select></label>`
    : "";
  main.innerHTML = `
    <section class="card controls">${yearBoxes} ${scopeSelect}</section>
    <section class="card" id="sofar" hidden></section>
    <section id="charts"><p class="muted">Loading spend…</p></section>
    <section class="card" id="alerts" hidden></section>
    ${state.viewer.isAdmin ? `<section class="card" id="lastclose"><h2>Last close</h2><p class="muted">Loading…</p></section>` : ""}
    ${state.viewer.isAdmin ? `<section class="card" id="failed"><h2>Failed syncs</h2><p class="muted">Loading…</p></section>` : ""}
    <section class="card" id="list"><h2>Invoices</h2><p class="muted">Loading…</p></section>`;
  main.querySelectorAll("input[name=year]").forEach((box) => box.addEventListener("change", () => {
    state.years = [...main.querySelectorAll("input[name=year]:checked")].map((b) => Number(b.value));
    renderHome().catch(showError);
  }));
  main.querySelector("#scope")?.addEventListener("change", (event) => {
    state.scope = event.target.value;
    state.cursors = [null];
    renderHome().catch(showError);
  });
  const admin = state.viewer.isAdmin;
  await Promise.all([loadCharts(years), loadList(), loadSoFar(), loadAlerts(),
    admin ? loadLastClose() : null, admin ? loadFailed() : null]);
}

// "This month so far": the current usage draft, refreshed every few seconds while it is shown
// (the metering feed of `make run` keeps adding to it). One organization: the member's own, or
// the operator's selected scope.
let soFarTimer = null;
async function loadSoFar() {
  clearTimeout(soFarTimer);
  const target = document.getElementById("sofar");
  const org = state.viewer.isAdmin ? state.scope : state.viewer.organizations[0]?.slug;
  if (!target || !org) return;
  const data = await gql(Q_SO_FAR, { org });
  const up = data.organization?.upcomingInvoice;
  if (!up) return;
  const group = (title, key, rows) => groupTable(title, key, rows, up.total);
  const latest = new Map(data.prices.map((p) => [p.product, p.formatted]));
  const used = new Set(up.byProduct.map((g) => g.name));
  const priceList = [...latest].filter(([product]) => used.has(product))
    .map(([product, text]) => `<li>${escapeHtml(product)}: ${escapeHtml(text)}</li>`).join("");
  target.hidden = false;
  target.innerHTML = `<h2>This month so far</h2>
    <p><strong class="big">${escapeHtml(up.total.formatted)}</strong> so far,
      projected <strong>${escapeHtml(up.projectedTotal.formatted)}</strong> by ${shortDate(up.periodEnd)}
      <span class="muted" data-field="range">(likely ${escapeHtml(up.projection.low.formatted)} to ${escapeHtml(up.projection.high.formatted)})</span>
      <span class="muted">(as of ${escapeHtml(when(up.asOf))}, ${up.lines.length} lines${up.invoice
        ? `; <a href="#/invoices/${encodeURIComponent(up.invoice.id)}">the draft</a>` : ""})</span></p>
    <div class="groups">${group("By product", "product", up.byProduct)}${group("By app", "app", up.byApp)}${group("By region", "region", up.byRegion)}</div>
    <details><summary>Unit prices</summary><ul>${priceList}</ul></details>`;
  soFarTimer = setTimeout(() => {
    if (document.getElementById("sofar")) loadSoFar().catch(() => {});
  }, 5000);
}

// A group table of the month so far: every row while there are few, else the largest ones
// and "+N more" with the rest's sum; the footer is the month's total, which the rows add up to.
const GROUP_ROWS = 8;
function groupTable(title, key, rows, total) {
  const sorted = [...rows].sort((a, b) => (BigInt(b.total.cents) > BigInt(a.total.cents) ? 1 : BigInt(b.total.cents) < BigInt(a.total.cents) ? -1 : 0));
  const shown = sorted.length > GROUP_ROWS ? sorted.slice(0, GROUP_ROWS - 1) : sorted;
  const rest = sorted.slice(shown.length);
  const currency = total.currency;
  const row = (g) => `<tr data-cents="${escapeHtml(g.total.cents)}"><td>${escapeHtml(g.name ?? "—")}</td>
    <td class="num">${escapeHtml(g.total.formatted)}</td>
    <td class="num muted">${g.projectedTotal ? `→ ${escapeHtml(g.projectedTotal.formatted)}` : ""}</td></tr>`;
  const restCents = sumCents(rest.map((g) => g.total.cents));
  const more = rest.length ? `<tr class="more" data-cents="${restCents}"><td>+${rest.length} more</td>
    <td class="num">${escapeHtml(formatCents(restCents, currency))}</td><td></td></tr>` : "";
  return `<div><h3>${title}</h3><table class="sofar-group" data-group="${key}"><tbody>${shown.map(row).join("")}${more}</tbody>
    <tfoot><tr><th>Total</th><th class="num" data-cents="${escapeHtml(total.cents)}">${escapeHtml(total.formatted)}</th><th></th></tr></tfoot></table></div>`;
}

// A price in minor units (exact decimal text, "70" or "0.0001") as major units: "$0.70".
function unitPrice(cents, currency) {
  const exp = new Intl.NumberFormat("en-US", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  const symbol = new Intl.NumberFormat("en-US", { style: "currency", currency }).formatToParts(0)
    .find((p) => p.type === "currency")?.value ?? `${currency} `;
  const negative = cents.startsWith("-");
  const [whole, frac = ""] = cents.replace("-", "").split(".");
  const digits = whole.padStart(exp + 1, "0");
  let major = `${digits.slice(0, digits.length - exp)}.${digits.slice(digits.length - exp)}${frac}`;
  major = major.replace(/0+$/, "");
  const [w, f = ""] = major.split(".");
  return `${negative ? "-" : ""}${symbol}${Number(w).toLocaleString("en-US")}.${f.padEnd(exp, "0")}`;
}

function monthBefore(period) {
  const [y, m] = period.split("-").map(Number);
  return m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, "0")}`;
}

// The operator's view of the month-end close: what the last `billing close-period` (or beat's
// close) did, and how many invoices still wait for Stripe after it.
async function loadLastClose() {
  const target = document.getElementById("lastclose");
  if (!target) return;
  const thisMonth = new Date().toISOString().slice(0, 7);
  const p1 = monthBefore(thisMonth);
  const data = await gql(Q_LAST_CLOSE, { p1, p2: monthBefore(p1) });
  const run = data.last ?? data.before;
  if (!run) {
    target.innerHTML = `<h2>Last close</h2><p class="muted">No close has run for ${escapeHtml(p1)} or ${escapeHtml(monthBefore(p1))} yet
      (<code>billing close-period --period ${escapeHtml(p1)}</code>).</p>`;
    return;
  }
  const field = (name, label, value) => `<dt>${label}</dt><dd data-field="${name}">${value}</dd>`;
  const progress = run.finishedAt ? "finished" : run.pending ? "running or stalled" : "not finished";
  target.innerHTML = `<h2>Last close <span class="muted" data-field="period">${escapeHtml(run.period)}</span>
      <span class="badge close-${progress.split(" ")[0]}">${progress}</span></h2>
    <dl class="close">
      ${field("startedAt", "Started", escapeHtml(when(run.startedAt)))}
      ${field("finishedAt", "Finished", escapeHtml(when(run.finishedAt) || progress))}
      ${field("finalized", "Finalized", `${run.finalized} <span class="muted">of ${run.drafts} drafts</span>`)}
      ${field("skipped", "Skipped (empty)", run.skipped)}
      ${field("failed", "Failed", run.failed)}
      ${field("pending", "Not closed yet", run.pending)}
      ${field("waiting", "Waiting for Stripe", `${data.waiting.totalCount} <span class="muted">invoices pending, syncing or retrying</span>`)}
      ${field("lastError", "Last error", run.lastError ? `<code class="error">${escapeHtml(run.lastError)}</code>` : `<span class="muted">none</span>`)}
    </dl>`;
}

// Spend alerts of one organization (the member's own, or the operator's selected scope): each
// threshold, and when it last fired.
async function loadAlerts() {
  const target = document.getElementById("alerts");
  const org = state.viewer.isAdmin ? state.scope : state.viewer.organizations[0]?.slug;
  if (!target || !org) return;
  const alerts = (await gql(Q_ALERTS, { org })).organization?.spendAlerts ?? [];
  if (!alerts.length) return;
  target.hidden = false;
  target.innerHTML = `<h2>Spend alerts</h2><ul class="alerts">${alerts.map((a) => `
    <li data-alert="${escapeHtml(a.id)}" data-kind="${escapeHtml(a.kind)}" data-fired="${a.triggeredAt ? "yes" : "no"}">
      <strong>${escapeHtml(a.threshold.formatted)}</strong> a month${a.kind === "FORECAST" ? " (forecast: when the projection's low end reaches it)" : ""}:
      ${a.triggeredAt ? `fired for ${escapeHtml(a.period)} at ${escapeHtml(when(a.triggeredAt))}` : `<span class="muted">not reached yet</span>`}</li>`).join("")}</ul>`;
}

async function loadCharts(years) {
  const target = document.getElementById("charts");
  if (years.length === 0) {
    target.innerHTML = `<p class="muted">Pick at least one year.</p>`;
    return;
  }
  const org = state.viewer.isAdmin ? state.scope || null : state.viewer.organizations[0]?.slug ?? null;
  const data = await gql(Q_SUMMARY, { years, org });
  target.innerHTML = `<h2>Monthly spend ${years.join(", ")}</h2>` + renderCharts(data.monthlySummary);
}

function invoiceRows(nodes, { resync = false } = {}) {
  return nodes.map((inv) => `
    <tr data-invoice="${escapeHtml(inv.id)}">
      <td><a href="#/invoices/${encodeURIComponent(inv.id)}">${escapeHtml(inv.number ?? "draft")}</a></td>
      ${state.viewer.isAdmin ? `<td>${escapeHtml(inv.organization.slug)}</td>` : ""}
      <td>${shortDate(inv.periodStart)} → ${shortDate(inv.periodEnd)}</td>
      <td>${badge("status", inv.status)}</td>
      <td class="sync-cell">${syncBadge(inv.syncState)}${resync ? errorDetail(inv.syncState) : ""}</td>
      <td class="num">${escapeHtml(inv.total.formatted)}</td>
      ${resync ? `<td><button class="resync" data-id="${escapeHtml(inv.id)}">Resync</button></td>` : ""}
    </tr>`).join("");
}

function errorDetail(sync) {
  if (!sync.lastError) return "";
  const e = sync.lastError;
  return `<div class="err-detail"><code>${escapeHtml(e.code ?? "")}</code> ${escapeHtml(e.message ?? "")}
    ${e.requestId ? `<span class="muted">request ${escapeHtml(e.requestId)}</span>` : ""}</div>`;
}

function listFilter() {
  return state.viewer.isAdmin && state.scope ? { organizationSlug: state.scope } : null;
}

async function loadList() {
  const target = document.getElementById("list");
  const after = state.cursors[state.cursors.length - 1];
  const data = await gql(Q_INVOICES, { first: PAGE_SIZE, after, filter: listFilter() });
  const conn = data.invoices;
  const page = state.cursors.length;
  target.innerHTML = `<h2>Invoices <span class="muted">(${conn.totalCount})</span></h2>
    <table class="invoices"><thead><tr><th>Number</th>${state.viewer.isAdmin ? "<th>Org</th>" : ""}<th>Period</th><th>Status</th><th>Stripe</th><th class="num">Total</th></tr></thead>
    <tbody>${invoiceRows(conn.nodes)}</tbody></table>
    <nav class="pager"><button id="prev" ${page === 1 ? "disabled" : ""}>← Newer</button>
      <span class="muted" id="page">page ${page}</span>
      <button id="next" ${conn.pageInfo.hasNextPage ? "" : "disabled"}>Older →</button></nav>`;
  target.querySelector("#next").addEventListener("click", () => {
    state.cursors.push(conn.pageInfo.endCursor);
    loadList().catch(showError);
  });
  target.querySelector("#prev").addEventListener("click", () => {
    state.cursors.pop();
    loadList().catch(showError);
  });
}

async function loadFailed() {
  const target = document.getElementById("failed");
  const filter = { syncStatus: "FAILED", ...(listFilter() ?? {}) };
  const data = await gql(Q_INVOICES, { first: 50, after: null, filter });
  const nodes = data.invoices.nodes;
  target.innerHTML = `<h2>Failed syncs <span class="muted">(${data.invoices.totalCount})</span></h2>` + (nodes.length
    ? `<table class="failed"><thead><tr><th>Number</th><th>Org</th><th>Period</th><th>Status</th><th>Stripe</th><th class="num">Total</th><th></th></tr></thead>
       <tbody>${invoiceRows(nodes, { resync: true })}</tbody></table>`
    : `<p class="muted">Nothing has failed. Every finalized invoice is synced or on its way.</p>`);
  target.querySelectorAll("button.resync").forEach((button) => button.addEventListener("click", () => resync(button)));
}

async function resync(button) {
  button.disabled = true;
  button.textContent = "Resyncing…";
  const row = button.closest("tr");
  try {
    const result = (await gql(M_RESYNC, { id: button.dataset.id })).resyncInvoice;
    if (result.userErrors.length) {
      button.textContent = result.userErrors[0].message;
      return;
    }
    row.querySelector(".sync-cell").innerHTML = syncBadge(result.invoice.syncState);
    button.textContent = "Queued";
  } catch (error) {
    button.textContent = `Failed: ${error.message}`;
  }
}

function groupBy(lines, key, currency) {
  const groups = new Map();
  for (const line of lines) {
    const name = line[key] ?? "(none)";
    groups.set(name, [...(groups.get(name) ?? []), line]);
  }
  const rows = [...groups.entries()]
    .map(([name, items]) => ({ name, count: items.length, cents: sumCents(items.map((l) => l.amount.cents)) }))
    .sort((a, b) => (b.cents > a.cents ? 1 : b.cents < a.cents ? -1 : 0));
  return `<table class="group" data-group="${key}"><thead><tr><th>${key === "app" ? "App" : "Region"}</th><th class="num">Lines</th><th class="num">Subtotal</th></tr></thead>
    <tbody>${rows.map((r) => `<tr data-name="${escapeHtml(r.name)}" data-cents="${r.cents}"><td>${escapeHtml(r.name)}</td><td class="num">${r.count}</td><td class="num">${escapeHtml(formatCents(r.cents, currency))}</td></tr>`).join("")}</tbody>
    <tfoot><tr><th>Total</th><th></th><th class="num" data-cents="${sumCents(rows.map((r) => r.cents))}">${escapeHtml(formatCents(sumCents(rows.map((r) => r.cents)), currency))}</th></tr></tfoot></table>`;
}

// Corrections of a finalized invoice: each credit note with its number, state and settlement.
function creditNotesCard(notes) {
  if (!notes.length) return "";
  const settled = (n) =>
    [["refund", n.refund], ["to balance", n.customerBalance], ["out of band", n.outOfBand]]
      .filter(([, m]) => m.cents !== "0")
      .map(([label, m]) => `${label} ${escapeHtml(m.formatted)}`)
      .join(", ");
  return `<section class="card credit-notes"><h2>Credit notes <span class="muted">(${notes.length})</span></h2>
    <table><thead><tr><th>Number</th><th>Status</th><th>Reason</th><th>Memo</th><th>Issued</th><th>Settled</th><th>Stripe</th><th class="num">Amount</th></tr></thead>
    <tbody>${notes.map((n) => `<tr class="credit-note status-${escapeHtml(n.status.toLowerCase())}"><td>${escapeHtml(n.number)}</td>
      <td>${badge("status", n.status)}</td><td>${escapeHtml(n.reason.toLowerCase().replaceAll("_", " "))}</td><td>${escapeHtml(n.memo ?? "")}</td>
      <td>${when(n.issuedAt)}${n.voidedAt ? ` · voided ${when(n.voidedAt)}` : ""}</td><td>${settled(n) || "lowers the amount due"}</td>
      <td>${escapeHtml(n.stripeCreditNoteId ?? "not on Stripe yet")}</td>
      <td class="num" data-cents="${escapeHtml(n.total.cents)}">-${escapeHtml(n.total.formatted)}</td></tr>`).join("")}</tbody></table></section>`;
}

// Stripe's hosted page and PDF, once the sync has finalized the invoice there; "Pay" only
// while something is left to pay.
function payLinks(inv) {
  const links = [];
  if (inv.hostedInvoiceUrl && ["OPEN", "UNCOLLECTIBLE"].includes(inv.status)) {
    links.push(`<a class="pay" href="${escapeHtml(inv.hostedInvoiceUrl)}" target="_blank" rel="noopener">Pay</a>`);
  }
  if (inv.pdfUrl) {
    links.push(`<a class="pdf" href="${escapeHtml(inv.pdfUrl)}" target="_blank" rel="noopener">PDF</a>`);
  }
  return links.length ? `<dt>Links</dt><dd class="links">${links.join(" · ")}</dd>` : "";
}

async function renderInvoice(id) {
  main.innerHTML = `<p class="muted">Loading invoice…</p>`;
  let data = await gql(Q_INVOICE, { id, after: null });
  const inv = data.invoice;
  if (!inv) {
    main.innerHTML = `<div class="card">No such invoice. <a href="#/">Back</a></div>`;
    return;
  }
  // "Where did the money go" needs every line, so page through all of them (100 at a time).
  const lines = [...inv.lineItems.nodes];
  let pageInfo = inv.lineItems.pageInfo;
  while (pageInfo.hasNextPage) {
    data = await gql(Q_INVOICE, { id, after: pageInfo.endCursor });
    lines.push(...data.invoice.lineItems.nodes);
    pageInfo = data.invoice.lineItems.pageInfo;
  }
  const sync = inv.syncState;
  main.innerHTML = `
    <p><a href="#/">← All invoices</a></p>
    <section class="card invoice-head">
      <h1>${escapeHtml(inv.number ?? "Draft invoice")} ${badge("status", inv.status)} ${syncBadge(sync)}</h1>
      <dl>
        <dt>Organization</dt><dd>${escapeHtml(inv.organization.name)}</dd>
        <dt>Period</dt><dd>${shortDate(inv.periodStart)} → ${shortDate(inv.periodEnd)} (end exclusive)</dd>
        <dt>Finalized</dt><dd>${when(inv.finalizedAt) || "not yet"}</dd>
        <dt>Due</dt><dd>${shortDate(inv.dueDate) || "—"}${sync.remoteDueDate && sync.remoteDueDate !== inv.dueDate ? ` <span class="muted">(on Stripe: ${shortDate(sync.remoteDueDate)}, synced late)</span>` : ""}</dd>
        ${inv.payment ? `<dt>Payment</dt><dd class="payment">${badge("payment", inv.payment.status)}
          ${inv.payment.lastFailureMessage ? ` ${escapeHtml(inv.payment.lastFailureMessage)}` : ""}
          ${inv.payment.nextAttemptAt ? ` · next attempt ${when(inv.payment.nextAttemptAt)}` : ""}</dd>` : ""}
        ${inv.paidAt ? `<dt>Paid</dt><dd>${when(inv.paidAt)}</dd>` : ""}
        ${inv.voidedAt ? `<dt>Voided</dt><dd>${when(inv.voidedAt)}</dd>` : ""}
        <dt>Total</dt><dd class="total" data-cents="${escapeHtml(inv.total.cents)}">${escapeHtml(inv.total.formatted)}</dd>
        ${inv.creditNotes.length ? `<dt>Credited</dt><dd class="credited" data-cents="${escapeHtml(inv.creditedTotal.cents)}">${escapeHtml(inv.creditedTotal.formatted)}</dd>` : ""}
        <dt>Amount due</dt><dd class="amount-due" data-cents="${escapeHtml(inv.amountDue.cents)}">${escapeHtml(inv.amountDue.formatted)}</dd>
        ${payLinks(inv)}
        <dt>Stripe</dt><dd>${escapeHtml(inv.stripeInvoiceId ?? "not on Stripe yet")} · ${sync.attempts} attempts
          ${sync.nextAttemptAt ? `· next try ${when(sync.nextAttemptAt)}` : ""}${errorDetail(sync)}</dd>
      </dl>
    </section>
    ${creditNotesCard(inv.creditNotes)}
    <section class="grid2">
      <div class="card"><h2>By app</h2>${groupBy(lines, "app", inv.currency)}</div>
      <div class="card"><h2>By region</h2>${groupBy(lines, "region", inv.currency)}</div>
    </section>
    <section class="card"><h2>Line items <span class="muted">(${inv.lineItemCount})</span></h2>
      <table class="lines"><thead><tr><th>Description</th><th class="num">Quantity</th><th>Unit</th><th class="num">Unit price</th><th class="num">Amount</th></tr></thead>
      <tbody>${lines.map((l) => `<tr class="kind-${escapeHtml(l.kind.toLowerCase())}" data-cents="${escapeHtml(l.amount.cents)}"
        title="${escapeHtml(`exact: ${l.quantity} ${l.unit} at ${l.unitPrice}¢ per ${l.unit}`)}"><td>${escapeHtml(l.description)}</td>
        <td class="num" data-field="displayQuantity">${escapeHtml(l.displayQuantity)}</td><td data-field="displayUnit">${escapeHtml(l.displayUnit)}</td>
        <td class="num" data-field="displayUnitPrice">${escapeHtml(unitPrice(l.displayUnitPrice, inv.currency))} / ${escapeHtml(l.displayUnit)}</td>
        <td class="num">${escapeHtml(l.amount.formatted)}</td></tr>`).join("")}</tbody>
      <tfoot><tr><th>Total</th><th></th><th></th><th></th><th class="num" data-cents="${escapeHtml(inv.total.cents)}">${escapeHtml(inv.total.formatted)}</th></tr></tfoot></table>
    </section>
    ${sync.history?.length ? `<section class="card"><h2>Sync history</h2><table><thead><tr><th>When</th><th>Step</th><th>Outcome</th><th>Error</th></tr></thead><tbody>
      ${sync.history.map((h) => `<tr><td>${when(h.startedAt)}</td><td>${escapeHtml(h.step)}</td><td>${escapeHtml(h.outcome)}</td><td>${escapeHtml(h.errorCode ?? "")} ${escapeHtml(h.errorMessage ?? "")}</td></tr>`).join("")}</tbody></table></section>` : ""}`;
}

document.getElementById("signout").addEventListener("click", () => {
  token.clear();
  renderSignIn();
});
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#token=")) {
    takeTokenFromFragment();
    state.viewer = null;
    start();
  } else if (state.viewer) {
    route();
  }
});
takeTokenFromFragment();
start();
