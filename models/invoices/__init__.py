"""Invoices: the lifecycle (draft -> open -> paid | void | uncollectible), their lines, the
gap-free numbering, finalize and the totals. Finalize and totals each have one implementation
here, which every path (the API, the close, the seed) calls."""
