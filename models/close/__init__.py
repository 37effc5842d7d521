"""The month-end close: the cycle's rules (which drafts, recurring lines, outcomes: `cycle`), a
chunk of drafts closed set-based (`chunk`) and the driver that claims chunks and keeps the run's
progress (`driver`)."""
