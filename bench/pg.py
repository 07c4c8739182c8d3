"""Throw-away PostgreSQL databases for benchmarks (tests have their own fixtures; bench/ never
imports tests/)."""
from __future__ import annotations

import uuid


def create_database(admin_url: str, prefix: str = "hotline_bench") -> str:
    """A new, empty database on the server of ``admin_url`` (a SQLAlchemy URL); its URL."""
    import sqlalchemy

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    import sqlalchemy

    name = url.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.dispose()
