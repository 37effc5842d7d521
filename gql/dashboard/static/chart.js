// A plain SVG bar chart: one chart per currency (amounts in different currencies share no
// scale), one bar per month of the chosen years, zero months drawn as empty slots. Under each
// bar its month ("Jan"), under each January its year; on the left an amount axis with round
// ticks (0, 1, 2 or 5 x 10^k minor units apart) labelled in the currency's own format.
import { escapeHtml, formatCents } from "./format.js";

const WIDTH = 760;
const HEIGHT = 240;
const PAD = { top: 16, right: 12, bottom: 40, left: 76 };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const TICKS = 4; // at most this many steps above zero

export function renderCharts(rows) {
  const byCurrency = new Map();
  for (const row of rows) {
    if (!byCurrency.has(row.currency)) byCurrency.set(row.currency, []);
    byCurrency.get(row.currency).push(row);
  }
  if (byCurrency.size === 0) return `<p class="muted">No invoices in these years.</p>`;
  return [...byCurrency.entries()].map(([currency, months]) => chart(currency, months)).join("");
}

// The smallest round step (1, 2 or 5 x 10^k cents, as a BigInt) that covers `max` in TICKS steps.
// BigInt all the way: a platform's monthly total can pass 2^53 cents.
export function tickStep(max) {
  if (max <= 0n) return 1n;
  for (let power = 1n; ; power *= 10n) {
    for (const m of [1n, 2n, 5n]) {
      if (m * power * BigInt(TICKS) >= max) return m * power;
    }
  }
}

function chart(currency, months) {
  const max = months.reduce((m, r) => (BigInt(r.total.cents) > m ? BigInt(r.total.cents) : m), 0n);
  const step = tickStep(max);
  const steps = max > 0n ? (max + step - 1n) / step : 1n;
  const top = step * steps; // the axis ends on a tick, at or above the highest bar
  const slot = (WIDTH - PAD.left - PAD.right) / months.length;
  const plot = HEIGHT - PAD.top - PAD.bottom;
  const total = months.reduce((s, r) => s + BigInt(r.total.cents), 0n);
  // Scale in floating point only for drawing; the amounts shown are exact strings.
  const yOf = (cents) => PAD.top + plot - (Number(cents) / Number(top)) * plot;
  const ticks = [];
  for (let i = 0n; i <= steps; i++) {
    const cents = step * i;
    const y = yOf(cents).toFixed(1);
    ticks.push(`<g class="y-tick" data-cents="${cents}">
      <line x1="${PAD.left - 4}" x2="${WIDTH - PAD.right}" y1="${y}" y2="${y}" class="${i === 0n ? "axis" : "grid"}"/>
      <text x="${PAD.left - 7}" y="${y}" class="y-label">${escapeHtml(formatCents(cents, currency))}</text></g>`);
  }
  const bars = months.map((r, i) => {
    const cents = BigInt(r.total.cents);
    const h = cents > 0n ? Math.max(1, PAD.top + plot - yOf(cents)) : 0;
    const x = PAD.left + i * slot + slot * 0.15;
    const y = PAD.top + plot - h;
    const mid = (x + slot * 0.35).toFixed(1);
    // A month not complete (the current one) counts its drafts so far: said on the bar.
    const soFar = r.complete === false && cents > 0n;
    const label = `${r.month}: ${r.total.formatted}${soFar ? " so far" : ""} (${r.invoiceCount} invoices)`;
    const monthNo = Number(r.month.slice(5, 7));
    const year = monthNo === 1 || i === 0
      ? `<text x="${mid}" y="${HEIGHT - PAD.bottom + 27}" class="year-label">${escapeHtml(r.month.slice(0, 4))}</text>`
      : "";
    return `<g class="bar${soFar ? " so-far" : ""}" data-month="${escapeHtml(r.month)}" data-currency="${escapeHtml(currency)}" data-cents="${escapeHtml(r.total.cents)}" data-count="${r.invoiceCount}">
      <rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${h.toFixed(1)}"><title>${escapeHtml(label)}</title></rect>
      <text x="${mid}" y="${HEIGHT - PAD.bottom + 13}" class="month-label">${MONTHS[monthNo - 1] ?? ""}</text>${year}${soFar
        ? `<text x="${mid}" y="${(y - 4).toFixed(1)}" class="so-far-label">so far</text>` : ""}</g>`;
  }).join("");
  return `<figure class="chart card" data-currency="${escapeHtml(currency)}">
    <figcaption><strong>${escapeHtml(currency)}</strong> <span class="muted">total ${escapeHtml(formatCents(total, currency))}</span></figcaption>
    <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="Monthly spend in ${escapeHtml(currency)}">
      <g class="y-axis">${ticks.join("")}</g>
      ${bars}
    </svg>
  </figure>`;
}
