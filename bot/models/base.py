"""The declarative base every table shares, and the project's time conventions.

Times are stored as naive UTC ``DateTime`` (SQLite has no time zones; PostgreSQL
``timestamp without time zone``); ``iso`` renders them with a ``Z``. Constraint
names follow one convention so later migrations can alter them on both databases.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None
