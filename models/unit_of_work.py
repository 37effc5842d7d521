"""The unit of work: one database transaction as an object, and what must happen after it.

A mutation or a job does its writes inside `with unit:` and registers its side effects on the
same object ("enqueue the sync of invoice 42": `unit.after_commit(...)`). The hooks run once,
in order, after the commit succeeds, and never after a rollback; so a side effect can never
announce a write that did not happen (the sweeper covers the opposite case: a commit whose
hook was lost with its process).

Blocks nest. The outermost `with unit:` begins the transaction and commits it; an inner one
joins it. `unit.enclosing()` is an outer block that does no work of its own (the idempotency
key's claim and record around a mutation): it commits only if a work block inside it
completed, so a mutation that refused its input (no block, or a block that raised) leaves
nothing behind, the key included. `before_commit` hooks run inside the transaction just
before that commit (the key's recorded outcome).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlmodel import Session

log = logging.getLogger("billing.unit_of_work")
Hook = Callable[[], None]


class UnitOfWork:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._depth = 0
        self._enclosed = False  # the outermost block is `enclosing()`: it needs a work block
        self._completed = 0  # work blocks that ended without an exception
        self._failed = False
        self._before: list[Hook] = []
        self._after: list[Hook] = []

    def after_commit(self, hook: Hook) -> None:
        """Run `hook` once this unit's transaction has committed (dropped on a rollback)."""
        self._after.append(hook)

    def before_commit(self, hook: Hook) -> None:
        """Run `hook` inside the transaction, just before it commits (never if it rolls back)."""
        self._before.append(hook)

    def __enter__(self) -> Session:
        self._begin()
        return self.session

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is not None:
            self._failed = True
        elif not (self._depth == 1 and self._enclosed):
            self._completed += 1
        self._end()

    @contextmanager
    def enclosing(self) -> Iterator[Session]:
        """An outer block around work done by others; see the module docstring."""
        if self._depth:
            raise RuntimeError("enclosing() opens the transaction; it cannot be nested")
        self._enclosed = True
        self._begin()
        try:
            yield self.session
        except BaseException:
            self._failed = True
            raise
        finally:
            self._end()

    def _begin(self) -> None:
        if self._depth == 0:
            # The request's earlier reads (a token lookup, loaders) ran in an implicit
            # transaction: end it, so the write sees fresh rows and holds its locks briefly.
            if self.session.in_transaction():
                self.session.rollback()
            self.session.begin()
        self._depth += 1

    def _end(self) -> None:
        self._depth -= 1
        if self._depth:
            return
        commit = not self._failed and self._completed > 0
        before, after = self._before, self._after
        self._before, self._after = [], []
        self._enclosed, self._completed, self._failed = False, 0, False
        if not commit:
            self.session.rollback()
            return
        try:
            for hook in before:
                hook()
        except BaseException:
            self.session.rollback()
            raise
        self.session.commit()
        for hook in after:
            try:
                hook()
            except Exception:  # committed already: a failed side effect must not undo the answer
                log.warning("after-commit hook failed", exc_info=True)
