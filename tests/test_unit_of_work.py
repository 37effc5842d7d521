"""The unit of work (models/unit_of_work.py): hooks after commit only, nesting, and the
enclosing block that commits only when the work inside it completed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models.unit_of_work import UnitOfWork


@pytest.fixture
def scratch(committed: sessionmaker[Session]) -> sessionmaker[Session]:
    with committed() as s, s.begin():
        s.execute(sa.text("CREATE TABLE IF NOT EXISTS uow_scratch (n int)"))
        s.execute(sa.text("TRUNCATE uow_scratch"))
    return committed


def _rows(factory: sessionmaker[Session]) -> list[int]:
    with factory() as s:
        return [r[0] for r in s.execute(sa.text("SELECT n FROM uow_scratch ORDER BY n"))]


def _insert(s: Session, n: int) -> None:
    s.execute(sa.text("INSERT INTO uow_scratch VALUES (:n)"), {"n": n})


def test_after_commit_hooks_run_once_after_the_commit(scratch: sessionmaker[Session]) -> None:
    seen: list[list[int]] = []
    with scratch() as session:
        unit = UnitOfWork(session)
        with unit as s:
            _insert(s, 1)
            unit.after_commit(lambda: seen.append(_rows(scratch)))  # another connection
        assert seen == [[1]]  # it saw the committed row
        with unit as s:
            _insert(s, 2)
        assert seen == [[1]]  # not run again by the next transaction


def test_a_rollback_drops_the_hooks(scratch: sessionmaker[Session]) -> None:
    seen: list[str] = []
    with scratch() as session:
        unit = UnitOfWork(session)
        with pytest.raises(ValueError), unit as s:
            _insert(s, 1)
            unit.after_commit(lambda: seen.append("after"))
            unit.before_commit(lambda: seen.append("before"))
            raise ValueError("refused")
    assert seen == [] and _rows(scratch) == []


def test_enclosing_commits_only_when_the_work_inside_completed(
    scratch: sessionmaker[Session],
) -> None:
    seen: list[str] = []
    with scratch() as session:
        unit = UnitOfWork(session)
        # No work block at all (the mutation refused its input before writing): nothing kept.
        with unit.enclosing() as s:
            _insert(s, 1)  # the idempotency key's claim
            unit.before_commit(lambda: seen.append("record 1"))
        # A work block that raised (a DomainError turned into userErrors above it).
        with unit.enclosing() as s:
            _insert(s, 2)
            with pytest.raises(ValueError), unit:
                raise ValueError("refused")
            unit.before_commit(lambda: seen.append("record 2"))
        # A work block that completed: claim, work and record commit together.
        with unit.enclosing() as s:
            _insert(s, 3)
            with unit as inner:
                _insert(inner, 4)
                unit.after_commit(lambda: seen.append("enqueue"))
            unit.before_commit(lambda: _insert(s, 5))
    assert seen == ["enqueue"]
    assert _rows(scratch) == [3, 4, 5]
