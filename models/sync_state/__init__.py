"""The Stripe sync's state, kept in PostgreSQL: the `invoice_sync` outbox and its state machine
(`outbox`), and the deliberate recreation of a remote invoice that was removed by hand
(`recreate`). The Stripe calls themselves live in the `sync` package."""
