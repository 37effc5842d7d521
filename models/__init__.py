"""The domain: plain functions over a SQLModel `Session`, one package per domain.

At the root, what every domain shares: `tables` (the SQLModel tables), `money` (minor units and
the one rounding rule), `errors` (coded domain errors), `ids`, `db` (engines and transactions),
and the small domains that fit one module: `prices`, `rollup`, `organizations`, `alerts`,
`idempotency`.

Packages, each owning one part of the model (its `__init__` says what):
- `invoices`: the invoice lifecycle, its lines, numbering, finalize and totals;
- `usage`: metered events in, the live draft, verification, the month so far;
- `close`: the month-end close (cycle rules, the set-based chunk, the driver);
- `sync_state`: the Stripe sync outbox's state machine;
- `payments`: what Stripe tells us about collecting an invoice.

Nothing here imports `gql`, `sync`, strawberry, celery or stripe (tests/test_layering.py), and
no function commits unless its docstring says it owns its transactions.
"""
