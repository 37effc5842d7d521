"""Reading one line or invoice item's amount, description, period and metadata."""

from __future__ import annotations

from ..errors import ParamError
from ..params import Reader
from ..store import NewLine


def read_line(p: Reader) -> NewLine:
    return NewLine(
        amount=p.required_int("amount"),
        description=p.str_or_none("description"),
        period=read_period(p),
        metadata=p.metadata_or_none() or {},
    )


def read_period(p: Reader) -> tuple[int, int] | None:
    period = p.child("period")
    if period is None:
        return None
    period.only("start", "end")
    start = period.required_int("start")
    end = period.required_int("end")
    if end < start:
        raise ParamError("The period must not end before it starts.", param=period.name("end"))
    return start, end
