"""Outbound webhooks: what happened, told to the URLs admins registered.

- `endpoints`: register, list and delete endpoints (URL rules, event types, signing secret).
- `events`: `emit` writes an event in the caller's transaction (the one function other code
  calls); spend alerts' notification_outbox rows become events by `promote_notifications`.
- `deliveries`: the outbox of (event, endpoint) rows: claims for the sweep, the start and the
  outcome of an attempt with its backoff, and the log operators read.

The HTTP sending and the signature are the sync side's (sync/webhooks_out/); this package only
reads and writes rows. docs/webhooks-out.md has the design and the runbook.
"""
