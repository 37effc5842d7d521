// Money arrives as { cents: "123456" (a string: 64-bit safe), currency, formatted }. Sums are
// done with BigInt so that a platform total above 2^53 cents stays exact.
const exponents = new Map();

function exponentOf(currency) {
  if (!exponents.has(currency)) {
    const digits = new Intl.NumberFormat("en-US", { style: "currency", currency })
      .resolvedOptions().maximumFractionDigits;
    exponents.set(currency, digits);
  }
  return exponents.get(currency);
}

export function formatCents(cents, currency) {
  const value = BigInt(cents);
  const exp = exponentOf(currency);
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const scale = 10n ** BigInt(exp);
  const whole = abs / scale;
  const minor = (abs % scale).toString().padStart(exp, "0");
  const parts = new Intl.NumberFormat("en-US", { style: "currency", currency, minimumFractionDigits: 0, maximumFractionDigits: 0 })
    .formatToParts(0)
    .map((p) => (p.type === "integer" ? whole.toLocaleString("en-US") + (exp ? `.${minor}` : "") : p.value))
    .join("");
  return (negative ? "-" : "") + parts;
}

export function sumCents(values) {
  return values.reduce((acc, v) => acc + BigInt(v), 0n);
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function shortDate(iso) {
  return iso ? iso.slice(0, 10) : "";
}

export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}
