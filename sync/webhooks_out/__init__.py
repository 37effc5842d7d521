"""Outbound webhooks, the sending side: the signature (`signing`), one HTTP attempt and the
sweep (`deliver`), and their Celery tasks (`tasks`). Rows live in models/webhooks_out."""
