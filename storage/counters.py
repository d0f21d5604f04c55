"""Shared counters (for ``/metrics``): incremented by any process, read by the web app."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.models import Counter, utcnow


def labels_text(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def increment(session: Session, name: str, amount: float = 1.0, **labels: str) -> None:
    """Add ``amount`` to the counter (created at 0 on first use). The caller commits."""
    text = labels_text(labels)
    result = session.exec(
        update(Counter)
        .where(col(Counter.name) == name, col(Counter.labels) == text)
        .values(value=col(Counter.value) + amount, updated_at=utcnow())
    )
    if result.rowcount == 0:
        session.add(Counter(name=name, labels=text, value=amount))
    session.flush()


def read_all(session: Session) -> list[Counter]:
    return list(session.exec(select(Counter).order_by(Counter.name, Counter.labels)).all())
