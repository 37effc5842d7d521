"""Payments: Stripe's payment events applied to invoices, and invoices paid here (`collection`)."""
