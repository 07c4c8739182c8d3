"""Staff accounts, roles, console sessions and login lockout.

Passwords are hashed with Argon2id (argon2-cffi; OWASP's m=19 MiB, t=2, p=1:
33 ms per check here). The check runs outside any database transaction, so a
burst of wrong logins never holds SQLite's writer lock (it did: 16 parallel
wrong logins pushed citizens' p50 from 18 ms to 3.4 s). After
``login_failures_before_lock`` failures an account locks, each further failure
doubling the lock up to ``login_lock_max_seconds``.

Sessions are server-side: the cookie carries a random token, the database only
its SHA-256, so logout, disabling an account or resetting a password revoke it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import argon2
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.config import LimitSettings
from bot.conversations.service import ConversationError
from bot.db import Database
from bot.models import Agent, AuditEntry, StaffSession, utcnow

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256

ROLES = ("agent", "editor", "supervisor", "admin")
RIGHTS = {
    "agent": frozenset({"desk"}),
    "editor": frozenset({"kb"}),
    "supervisor": frozenset({"desk", "dashboard"}),
    "admin": frozenset({"desk", "kb", "dashboard", "accounts"}),
}

_HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY_HASH = _HASHER.hash("not-a-real-password")


@dataclass(frozen=True)
class StaffMember:
    id: int
    username: str
    display_name: str
    role: str

    @property
    def rights(self) -> frozenset[str]:
        return RIGHTS.get(self.role, frozenset())

    def can(self, right: str) -> bool:
        return right in self.rights

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name, "role": self.role,
                "rights": sorted(self.rights)}


class LockedOut(ConversationError):
    def __init__(self, seconds: float):
        super().__init__("limited", f"too many failed logins; try again in {int(seconds) + 1} s")
        self.seconds = seconds


def _member(agent: Agent) -> StaffMember:
    return StaffMember(agent.id, agent.username, agent.display_name, agent.role)


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaffDirectory:
    def __init__(self, db: Database, limits: LimitSettings | None = None, session_hours: float = 12.0,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.limits = limits or LimitSettings()
        self.session_lifetime = dt.timedelta(hours=session_hours)
        self.clock = clock

    # -- accounts ---------------------------------------------------------------------

    @staticmethod
    def _check_password(password: str | None) -> str:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise ConversationError("invalid", f"password: must be at least {MIN_PASSWORD} characters", "password")
        if len(password) > MAX_PASSWORD or "\x00" in password:
            raise ConversationError("invalid", f"password: at most {MAX_PASSWORD} characters, no NUL", "password")
        return password

    def create(self, username: str, password: str, display_name: str | None = None, role: str = "agent",
               actor: str = "cli") -> StaffMember:
        username = (username or "").strip().lower()
        if not USERNAME.match(username):
            raise ConversationError("invalid", "username: 2-32 characters: lowercase letters, digits, _ . -",
                                    "username")
        if role not in ROLES:
            raise ConversationError("invalid", f"role: must be one of {', '.join(ROLES)}", "role")
        hashed = _HASHER.hash(self._check_password(password))
        with self.db.transaction() as session:
            if session.execute(select(Agent.id).where(Agent.username == username)).first():
                raise ConversationError("conflict", f"account {username!r} already exists", "username")
            agent = Agent(username=username, display_name=(display_name or username)[:64], role=role,
                          password_hash=hashed, on_duty=False, failed_logins=0, created_at=self.clock(),
                          password_changed_at=self.clock())
            session.add(agent)
            session.flush()
            self.audit(session, actor, "account.created", username, {"role": role})
            return _member(agent)

    def get(self, username: str) -> StaffMember | None:
        with self.db.read() as session:
            agent = session.execute(select(Agent).where(Agent.username == username,
                                                        Agent.disabled_at.is_(None))).scalar_one_or_none()
            return _member(agent) if agent else None

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return [{"username": a.username, "display_name": a.display_name, "role": a.role,
                     "disabled": a.disabled_at is not None, "on_duty": a.on_duty,
                     "locked": bool(a.locked_until and a.locked_until > self.clock())}
                    for a in session.execute(select(Agent).order_by(Agent.username)).scalars()]

    def disable(self, username: str, actor: str = "cli") -> None:
        """No more logins, every open session ends, and the agent is off duty."""
        now = self.clock()
        with self.db.transaction() as session:
            agent = self._agent(session, username)
            agent.disabled_at, agent.on_duty = now, False
            self._revoke(session, agent.id, now)
            self.audit(session, actor, "account.disabled", username)

    def enable(self, username: str, actor: str = "cli") -> None:
        with self.db.transaction() as session:
            agent = self._agent(session, username)
            agent.disabled_at, agent.failed_logins, agent.locked_until = None, 0, None
            self.audit(session, actor, "account.enabled", username)

    def reset_password(self, username: str, password: str, actor: str = "cli") -> None:
        hashed = _HASHER.hash(self._check_password(password))
        now = self.clock()
        with self.db.transaction() as session:
            agent = self._agent(session, username)
            agent.password_hash, agent.password_changed_at = hashed, now
            agent.failed_logins, agent.locked_until = 0, None
            self._revoke(session, agent.id, now)
            self.audit(session, actor, "account.password_reset", username)

    def set_role(self, username: str, role: str, actor: str) -> None:
        if role not in ROLES:
            raise ConversationError("invalid", f"role: must be one of {', '.join(ROLES)}", "role")
        with self.db.transaction() as session:
            agent = self._agent(session, username)
            agent.role = role
            self.audit(session, actor, "account.role", username, {"role": role})

    @staticmethod
    def _agent(session: Session, username: str) -> Agent:
        agent: Agent | None = session.execute(select(Agent).where(Agent.username == (username or "").strip().lower())
                                ).scalar_one_or_none()
        if agent is None:
            raise ConversationError("not_found", f"no account {username!r}", "username")
        return agent

    @staticmethod
    def audit(session: Session, actor: str, action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
        session.add(AuditEntry(actor=actor, action=action, target=target, detail=detail or {}, at=utcnow()))

    # -- logging in -------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> StaffMember | None:
        """The member, or None for a wrong username/password; LockedOut while locked."""
        username = (username or "").strip().lower()
        now = self.clock()
        with self.db.read() as session:
            agent = session.execute(select(Agent).where(Agent.username == username)).scalar_one_or_none()
            record = None if agent is None else (agent.id, agent.password_hash, agent.disabled_at, agent.locked_until)
        if record is not None and record[3] is not None and record[3] > now:
            raise LockedOut((record[3] - now).total_seconds())
        try:  # outside any transaction: the hash never holds a lock
            ok = record is not None and _HASHER.verify(record[1], password or "")
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            ok = False
        if record is None:
            try:
                _HASHER.verify(_DUMMY_HASH, password or "")  # same cost: no username oracle
            except argon2.exceptions.VerificationError:
                pass
            return None
        with self.db.transaction() as session:
            agent = session.get(Agent, record[0])
            if agent is None:  # deleted between the two transactions
                return None
            if not ok or agent.disabled_at is not None:
                if not ok:
                    agent.failed_logins = (agent.failed_logins or 0) + 1
                    over = agent.failed_logins - self.limits.login_failures_before_lock
                    if over >= 0:
                        seconds = min(self.limits.login_lock_max_seconds, self.limits.login_lock_seconds * 2 ** over)
                        agent.locked_until = now + dt.timedelta(seconds=seconds)
                        self.audit(session, username, "account.locked", username, {"seconds": seconds})
                return None
            agent.failed_logins, agent.locked_until = 0, None
            if _HASHER.check_needs_rehash(agent.password_hash):
                agent.password_hash = _HASHER.hash(password)
            return _member(agent)

    def start_session(self, member: StaffMember) -> tuple[str, str]:
        """(cookie token, CSRF token) of a new server-side session."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.transaction() as session:
            session.add(StaffSession(id=_token_id(token), agent_id=member.id, csrf=csrf, created_at=now,
                                     last_seen_at=now, expires_at=now + self.session_lifetime))
        return token, csrf

    def session(self, token: str | None) -> tuple[StaffMember, str] | None:
        """(member, csrf) for a live session; None when unknown, expired, revoked or disabled."""
        if not token or len(token) > 128:
            return None
        now = self.clock()
        with self.db.read() as session:
            row = session.execute(
                select(StaffSession, Agent).join(Agent, Agent.id == StaffSession.agent_id)
                .where(StaffSession.id == _token_id(token))).first()
        if row is None:
            return None
        staff_session, agent = row
        if staff_session.revoked_at is not None or staff_session.expires_at <= now or agent.disabled_at is not None:
            return None
        return _member(agent), staff_session.csrf

    def end_session(self, token: str) -> None:
        with self.db.transaction() as session:
            session.execute(update(StaffSession).where(StaffSession.id == _token_id(token))
                            .values(revoked_at=self.clock()))

    @staticmethod
    def _revoke(session: Session, agent_id: int, now: dt.datetime) -> None:
        session.execute(update(StaffSession).where(StaffSession.agent_id == agent_id,
                                                   StaffSession.revoked_at.is_(None)).values(revoked_at=now))

    def active_sessions(self, username: str) -> int:
        now = self.clock()
        with self.db.read() as session:
            return int(session.execute(
                select(func.count(StaffSession.id)).join(Agent, Agent.id == StaffSession.agent_id)
                .where(Agent.username == username, StaffSession.revoked_at.is_(None),
                       StaffSession.expires_at > now)).scalar() or 0)
