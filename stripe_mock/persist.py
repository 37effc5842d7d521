"""The mock's objects on disk, so that restarting `make run` keeps the customers and invoices
the database already points at (Stripe does not forget them either).

An append-only JSON-lines journal: one line per object each time a request changes it (the
whole object, so the last line for an id wins), a tombstone for a deleted draft. Appending a
line per change costs the same whatever the mock holds; rewriting a snapshot on every change
would cost O(objects) per request, minutes per month-end with 100,000 lines. At start-up the
journal is replayed and compacted to one line per live object. Idempotency keys, fault rules
and stats are not kept: a restart is like Stripe pruning keys, which the sync must survive.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Customer, Invoice, InvoiceItem, Store


def _kind(obj: Customer | Invoice | InvoiceItem) -> str:
    return {"Customer": "customer", "Invoice": "invoice", "InvoiceItem": "item"}[type(obj).__name__]


def _record(obj: Customer | Invoice | InvoiceItem) -> dict[str, Any]:
    if _kind(obj) == "invoice":
        record = {k: v for k, v in vars(obj).items() if k != "items"}
        record["item_ids"] = [item.id for item in obj.items]  # type: ignore[union-attr]
        return record
    return asdict(obj)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def restore(self, store: Store) -> None:
        """Replay the journal into `store`, then rewrite it compacted and keep appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        entry = json.loads(line)
                        store.restore(entry["kind"], entry["object"])
        # Monotonic deadlines do not survive a restart: restored objects are searchable now.
        for customer in store.customers.values():
            customer.visible_at = 0.0
        for invoice in store.invoices.values():
            invoice.visible_at = 0.0
        tmp = self.path.with_suffix(".tmp")
        objects: list[Customer | Invoice | InvoiceItem] = [
            *store.customers.values(),
            *store.invoice_items.values(),
            *store.invoices.values(),
        ]
        with tmp.open("w", encoding="utf-8") as f:
            for obj in objects:
                f.write(json.dumps({"kind": _kind(obj), "object": _record(obj)}) + "\n")
        os.replace(tmp, self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def put(self, obj: Customer | Invoice | InvoiceItem) -> None:
        self._write({"kind": _kind(obj), "object": _record(obj)})

    def put_deleted(self, invoice_id: str) -> None:
        self._write({"kind": "deleted_invoice", "object": {"id": invoice_id}})

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            # Flushed to the OS per change: a killed mock loses nothing; a power cut may lose
            # the last lines, as a crash loses Stripe's answers in flight.
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
