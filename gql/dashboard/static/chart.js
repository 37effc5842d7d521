// A plain SVG bar chart: one chart per currency (amounts in different currencies share no
// scale), one bar per month of the chosen years, zero months drawn as empty slots.
import { escapeHtml, formatCents } from "./format.js";

const WIDTH = 760;
const HEIGHT = 220;
const PAD = { top: 16, right: 12, bottom: 36, left: 12 };

export function renderCharts(rows) {
  const byCurrency = new Map();
  for (const row of rows) {
    if (!byCurrency.has(row.currency)) byCurrency.set(row.currency, []);
    byCurrency.get(row.currency).push(row);
  }
  if (byCurrency.size === 0) return `<p class="muted">No invoices in these years.</p>`;
  return [...byCurrency.entries()].map(([currency, months]) => chart(currency, months)).join("");
}

function chart(currency, months) {
  const max = months.reduce((m, r) => (BigInt(r.total.cents) > m ? BigInt(r.total.cents) : m), 0n);
  const slot = (WIDTH - PAD.left - PAD.right) / months.length;
  const plot = HEIGHT - PAD.top - PAD.bottom;
  const total = months.reduce((s, r) => s + BigInt(r.total.cents), 0n);
  const bars = months.map((r, i) => {
    const cents = BigInt(r.total.cents);
    // Scale in floating point only for drawing; the amounts shown are exact strings.
    const h = max > 0n && cents > 0n ? Math.max(1, (Number(cents) / Number(max)) * plot) : 0;
    const x = PAD.left + i * slot + slot * 0.15;
    const y = PAD.top + plot - h;
    const label = `${r.month}: ${r.total.formatted} (${r.invoiceCount} invoices)`;
    const tick = r.month.endsWith("-01") || months.length <= 12
      ? `<text x="${x + slot * 0.35}" y="${HEIGHT - PAD.bottom + 14}" class="tick">${escapeHtml(months.length <= 12 ? r.month.slice(5) : r.month.slice(0, 4))}</text>`
      : "";
    return `<g class="bar" data-month="${escapeHtml(r.month)}" data-currency="${escapeHtml(currency)}" data-cents="${escapeHtml(r.total.cents)}" data-count="${r.invoiceCount}">
      <rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${h.toFixed(1)}"><title>${escapeHtml(label)}</title></rect>${tick}</g>`;
  }).join("");
  return `<figure class="chart card" data-currency="${escapeHtml(currency)}">
    <figcaption><strong>${escapeHtml(currency)}</strong> <span class="muted">total ${escapeHtml(formatCents(total, currency))}</span></figcaption>
    <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="Monthly spend in ${escapeHtml(currency)}">
      <line x1="${PAD.left}" x2="${WIDTH - PAD.right}" y1="${PAD.top + plot}" y2="${PAD.top + plot}" class="axis"/>
      ${bars}
    </svg>
  </figure>`;
}
