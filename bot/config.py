"""One typed settings object for the whole application, built once and passed down.

Values come from environment variables with the ``HOTLINE_`` prefix (nested
groups with ``__``: ``HOTLINE_WECHAT__ACCOUNTS``, ``HOTLINE_LIMITS__MESSAGES_PER_MINUTE``),
then an optional ``hotline.env`` file, then the defaults below, which run on one
machine with nothing else installed. ``DATABASE_URL`` is also honoured unprefixed,
as deploy tooling usually sets it. Nothing else in the code reads the environment.
"""
from __future__ import annotations

from bot.yaml_files import load_yaml

import base64
import binascii
import datetime as dt
import os
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent


def default_knowledge_dir() -> Path:
    """The KB the package ships (``knowledge/``, installed as package data)."""
    import knowledge

    return Path(knowledge.__file__).resolve().parent


class Thresholds(BaseModel):
    """Decision thresholds. Defaults come from ``knowledge/thresholds/<encoder>.yml``
    (scores of different encoders live on different scales), which
    ``bench/calibrate.py`` writes from held-out data; an operator can override
    one with ``HOTLINE_THRESHOLDS__<NAME>``."""

    model_config = ConfigDict(extra="ignore")

    answer: float = 0.62
    suggest: float = 0.45
    margin: float = 0.04
    dense_weight: float = 0.7
    lexical_saturation: float = 8.0
    intent: float = 0.55
    # Weight of the entry classifier (adapter learned from the KB's paraphrases) in the fused score.
    classifier_weight: float = 0.0
    # Scope model (bot/scope.py): P(top entry answers the question) = σ(scope_coef·features + scope_intercept);
    # answer at >= scope_answer, offer did-you-mean at >= scope_suggest, below: "not covered".
    # Empty scope_coef: the plain score thresholds above decide (answer / suggest / margin).
    scope_coef: list[float] = []
    scope_intercept: float = 0.0
    scope_answer: float = 0.5
    scope_suggest: float = 0.2
    # Learned emergency detector: P(emergency) at or above this is a red flag (the regex floor always is).
    emergency: float = 0.5
    # ...unless the detector is unsure (P < emergency_sure) and the scope model would answer the question
    # directly from the KB (scope >= scope_answer): a question the KB answers ("刚吃完饭做核酸会不会吐") is
    # not a person in danger. 0 (with emergency_sure_slope 0) = no such veto. The regex floor is never vetoed.
    emergency_sure: float = 0.0
    # ...and the surer the scope model, the surer the detector must be: the band's top rises by this much from
    # scope_answer to scope 1 (0: a flat band). See bot.safety.learned_alarm.
    emergency_sure_slope: float = 0.0

    @classmethod
    def load(cls, path: Path, overrides: dict[str, float] | None = None) -> "Thresholds":
        values: dict[str, object] = {}
        if path.exists():
            values = load_yaml(path) or {}
        unknown = set(overrides or {}) - set(cls.model_fields)
        if unknown:
            raise ValueError(f"thresholds: unknown override(s) {sorted(unknown)}; known: {sorted(cls.model_fields)}")
        return cls(**(values | dict(overrides or {})))


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Worker processes (0 = one per CPU core). Each loads the index once before forking,
    # so the pages are shared copy-on-write.
    workers: int = Field(default=0, ge=0, le=64)
    # Threads per worker that run Flask views. Waiting long polls hold none of them:
    # the asynchronous front parks them on the event loop.
    threads: int = Field(default=8, ge=1, le=256)
    # Connections a worker accepts at once (waiting citizens included).
    max_connections: int = Field(default=4096, ge=16)
    timeout_keep_alive: int = Field(default=5, ge=1)
    # Reverse proxies in front whose X-Forwarded-For/-Proto to trust (0 = none): per-IP limits
    # and Secure cookies need the client's real address and scheme.
    trusted_proxies: int = Field(default=0, ge=0, le=5)


class WebSettings(BaseModel):
    # Sites that may embed the widget: comma-separated origins, or "*".
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    long_poll_seconds: float = Field(default=20.0, gt=0, le=60)
    # HMAC key of the host site's server for HotlineBot.identify({userId, signature}); unset = off.
    identify_secret: str | None = Field(default=None, repr=False)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value


class WebhookSettings(BaseModel):
    """Handoff events POSTed to an external ticket system, signed ``X-Hotline-Signature``."""

    url: str | None = None
    secret: str | None = Field(default=None, repr=False)
    timeout: float = Field(default=5.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class OutboxSettings(BaseModel):
    """Delivery of outbox work (webhooks, WeChat sends): one retry/backoff policy for all."""

    poll_interval: float = Field(default=1.0, gt=0)
    workers: int = Field(default=4, ge=1, le=64)  # sends in flight at once: one hang blocks nobody
    backoff_base: float = Field(default=2.0, gt=0)  # seconds before the first retry; doubles each attempt
    backoff_max: float = Field(default=300.0, gt=0)  # retries never stop, they settle at this interval
    lease_seconds: float = Field(default=120.0, gt=0)  # a send in flight is hidden from other workers this long
    tail_interval: float = Field(default=0.2, gt=0)  # how often a process reads others' events (no Redis)


# Short enough that every WeChat key stays well within column sizes.
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_]{1,24}$")


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind a 43-character EncodingAESKey."""
    if not isinstance(encoding_aes_key, str) or len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("EncodingAESKey must be base64") from None
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


class WeChatAccount(BaseModel):
    """One Official Account or mini-program, as set up in the WeChat admin console.
    Secrets are never logged (``repr=False``, errors hide inputs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str
    token: str = Field(min_length=3, max_length=32, repr=False)
    app_id: str = Field(min_length=1, max_length=64)
    app_secret: str = Field(default="", repr=False)
    encoding_aes_key: str | None = Field(default=None, repr=False)
    previous_encoding_aes_key: str | None = Field(default=None, repr=False)
    # Mini-program customer service has no passive reply: every answer goes out by the send API.
    kind: Literal["official", "miniprogram"] = "official"
    reply_budget: float | None = Field(default=None, gt=0, le=4.5)

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not ACCOUNT_NAME.match(value):
            raise ValueError("account name must be 1-24 letters, digits or underscores")
        return value

    @field_validator("encoding_aes_key", "previous_encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: str | None) -> str | None:
        if value:
            decode_aes_key(value)
        return value or None


class WeChatSettings(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # errors must not echo secrets

    accounts: list[WeChatAccount] = Field(default_factory=list)
    api_base: str = "https://api.weixin.qq.com"
    # WeChat gives up after 5 s; answer passively only when the bot is done well before that.
    reply_budget: float = Field(default=4.0, gt=0, le=4.5)
    max_body_bytes: int = Field(default=16 * 1024, ge=1024, le=64 * 1024)
    # Plain mode signs only the URL: reject POSTs whose timestamp is this far off, and
    # remember each (timestamp, nonce) for this long so a captured URL is not replayed.
    max_clock_skew: int = Field(default=300, ge=1)
    # The send API sometimes answers slowly: a send still running is never started twice,
    # and a send that timed out is retried (at least once delivery; see README).
    http_timeout: float = Field(default=15.0, gt=0)
    window_hours: int = Field(default=48, ge=1)
    window_messages: int = Field(default=5, ge=1)
    # WeChat text messages are limited to 2048 bytes of UTF-8.
    max_reply_bytes: int = Field(default=2000, ge=200, le=2048)

    @model_validator(mode="after")
    def _unique_names(self) -> "WeChatSettings":
        names = [a.name for a in self.accounts]
        if len(names) != len(set(names)):
            raise ValueError("WeChat account names must be unique")
        self.api_base = self.api_base.rstrip("/")
        return self

    def account(self, name: str) -> WeChatAccount | None:
        return next((a for a in self.accounts if a.name == name), None)

    def budget_for(self, account: WeChatAccount) -> float:
        return account.reply_budget or self.reply_budget


class LimitSettings(BaseModel):
    """Abuse limits (Flask-Limiter syntax, e.g. ``30/minute``); storage is Redis when
    ``HOTLINE_REDIS_URL`` is set, otherwise each process's memory."""

    enabled: bool = True
    messages_per_user: str = "20/minute;300/hour"
    messages_per_conversation: str = "30/minute"
    messages_per_ip: str = "120/minute"
    handoffs_per_ip: str = "10/hour"
    callbacks_per_ip: str = "5/hour"
    callbacks_per_phone: int = Field(default=3, ge=1)  # open callbacks for one number
    logins_per_ip: str = "20/minute"
    max_turns_per_conversation: int = Field(default=400, ge=10)
    open_handoffs_per_citizen: int = Field(default=1, ge=1)
    # Failed logins before the account locks; each further failure doubles the lock (capped).
    login_failures_before_lock: int = Field(default=5, ge=1)
    login_lock_seconds: float = Field(default=30.0, gt=0)
    login_lock_max_seconds: float = Field(default=900.0, gt=0)
    # The counters' key prefix in Redis: every process of one deployment must share it; deployments (or test
    # runs) sharing one Redis need their own, or they count each other's citizens (the suite's handoffs from
    # 127.0.0.1 stayed counted for an hour, and the sixth run that hour was refused: 429).
    key_prefix: str = Field(default="hotline", min_length=1)


class PrivacySettings(BaseModel):
    # Fernet key (urlsafe base64, 32 bytes) for personal data at rest. Unset: a key is
    # generated once into <data_dir>/privacy.key (one machine); several hosts must share one.
    key: str | None = Field(default=None, repr=False)
    retention_days: int = Field(default=90, ge=1)


class DeskSettings(BaseModel):
    timezone: str = "Asia/Shanghai"
    # Opening hours per weekday (mon..sun): "08:00-20:00", several ranges comma-separated, "" = closed.
    hours: dict[str, str] = Field(default_factory=lambda: {d: "00:00-24:00" for d in
                                                           ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    presence_seconds: float = Field(default=90.0, gt=0)  # the console polls every ~20 s
    callback_due_hours: float = Field(default=4.0, gt=0)  # open callbacks older than this are overdue
    abandon_after_minutes: float = Field(default=30.0, gt=0)  # a waiting citizen silent this long has left
    abandon_sweep_seconds: float = Field(default=60.0, gt=0)  # how often each process looks for them
    service_level_target: float = Field(default=0.8, gt=0, lt=1)  # share of citizens claimed within...
    service_level_seconds: float = Field(default=60.0, gt=0)  # ...this many seconds (staffing advice)

    @field_validator("hours")
    @classmethod
    def _hours_shape(cls, value: dict[str, str]) -> dict[str, str]:
        days = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        if set(value) - days:
            raise ValueError(f"hours: days must be among {sorted(days)}")
        for day, spec in value.items():
            for part in filter(None, (p.strip() for p in spec.split(","))):
                match = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", part)
                if not match or not (dt.time(int(match[1]), int(match[2])) <
                                     (dt.time(int(match[3]), int(match[4])) if match[3] != "24" else dt.time.max)):
                    raise ValueError(f"hours.{day}: expected HH:MM-HH:MM ranges, got {part!r}")
        return value


class KbSettings(BaseModel):
    """Editing the knowledge base in the console (issue 9)."""

    # On: the database is the live source of the FAQ entries (seeded from knowledge_dir on first
    # start; `hotline-bot kb import|export` move them to and from YAML). Off: the files, as before.
    editing: bool = False
    # Seconds between two reads of the version row in one process (0: before every request).
    check_interval: float = Field(default=0.0, ge=0)
    # A request that finds a newer published version waits at most this long for its process to
    # swap to it (the swap is a load from disk when another process already built the index).
    reload_wait: float = Field(default=30.0, ge=0)
    # Contacts (contacts.yml) not verified for this many days are flagged to editors and
    # listed by `kb validate` as warnings.
    contact_stale_days: int = Field(default=30, ge=1)
    # A process serving a provisional index (a paraphrase publish: new paraphrases, previous models)
    # retrains it itself when the publisher's retrained index has not appeared on disk within this
    # many seconds (another host without the shared data dir; a publisher that died).
    retrain_after: float = Field(default=60.0, ge=0)
    # Four-eyes rule: a draft is published only by an editor other than the one who wrote it
    # (publishing is the second editor's approval).
    four_eyes: bool = False


class SimulationSettings(BaseModel):
    """A warped clock, for replaying a day (bench/simulate.py) only: the server's time is
    ``start + (time.time() - anchor) * speed``, the same in every worker process. Unset (the
    default): real time. Never set this on a server citizens use."""

    start: dt.datetime | None = None  # naive UTC: the simulated moment at ``anchor``
    anchor: float | None = None  # unix seconds (real) at which the simulated clock read ``start``
    speed: float = Field(default=1.0, gt=0, le=100_000)

    @model_validator(mode="after")
    def _both_or_neither(self) -> "SimulationSettings":
        if (self.start is None) != (self.anchor is None):
            raise ValueError("simulation: start and anchor go together")
        return self


class DatabaseSettings(BaseModel):
    connect_timeout: float = Field(default=2.0, gt=0)  # psycopg's own limit for opening a connection
    # Each statement; a transaction on a frozen link is cut 0.3 s later (bot.db.DEADLINE_GRACE), so a
    # frozen database answers 503 within about 1.5 s (issue 8: within 2 s). A caller waiting for a new
    # connection also gives up then (libpq and psycopg raise a connect_timeout under 2 s to 2 s, so the
    # wait is bounded by bot.db, and the late connection is closed).
    statement_timeout: float = Field(default=1.2, gt=0)
    pool_size: int = Field(default=10, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", env_nested_delimiter="__",
                                      env_file="hotline.env", extra="ignore",
                                      hide_input_in_errors=True)  # errors must not echo secrets

    knowledge_dir: Path = Field(default_factory=default_knowledge_dir)
    data_dir: Path = Path("var")
    # Derived, rebuildable files (the index per KB version, fast-loading model copies); default
    # <data_dir>. Several data dirs may share one, as the test servers do: each new data dir would
    # otherwise re-encode the KB and re-unpack the model (about 8 s per server on 2 cores).
    cache_dir: Path | None = None
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("HOTLINE_DATABASE_URL", "DATABASE_URL"))
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0: wake-ups and limits across processes/hosts
    # Bearer token for the staff read API (transcripts, tickets) for scripts; staff sessions work too.
    api_token: str | None = Field(default=None, repr=False)
    open_read_api: bool = False  # development only: read API without a token or session
    secret_key: str | None = Field(default=None, repr=False)  # cookie signing; default kept in data_dir
    cookie_secure: bool = True  # console cookies only over HTTPS (set 0 for plain-HTTP development)
    session_hours: float = Field(default=12.0, gt=0)
    encoder: str = "use"  # "use" | "e5" | path to a local sentence-transformers model folder
    # BLAS threads per encoder call. 1 while serving: request threads run encodes side by side,
    # and OpenBLAS's own pool serialises concurrent callers (measured with 16 request threads and
    # distinct texts: 2 threads -> 78 encodes/s, 1 thread -> 158/s on 2 cores).
    encoder_threads: int = Field(default=1, ge=1)
    max_message_chars: int = Field(default=2000, ge=1)
    max_failures_before_handoff: int = Field(default=2, ge=1)
    thresholds_file: Path | None = None
    thresholds_override: dict[str, float] = Field(
        default_factory=dict, validation_alias=AliasChoices("HOTLINE_THRESHOLDS", "thresholds_override"))

    server: ServerSettings = Field(default_factory=ServerSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    desk: DeskSettings = Field(default_factory=DeskSettings)
    kb: KbSettings = Field(default_factory=KbSettings)
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # psycopg 3 is the installed driver; plain postgresql:// would pick psycopg2.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'hotline.db').resolve()}"

    @property
    def kb_work_dir(self) -> Path:
        """Published KB versions materialised as KB directories (``<data_dir>/kb/<version>``)."""
        return self.data_dir / "kb"

    @property
    def index_dir(self) -> Path:
        return (self.cache_dir or self.data_dir) / "index"

    @property
    def models_dir(self) -> Path:
        return (self.cache_dir or self.data_dir) / "models"

    @cached_property
    def thresholds(self) -> Thresholds:
        path = self.thresholds_file or self.knowledge_dir / "thresholds" / f"{self.encoder_key}.yml"
        return Thresholds.load(path, self.thresholds_override)

    @property
    def encoder_key(self) -> str:
        """A file-name-safe name for the encoder (``use``, ``e5`` or a model folder's name)."""
        name = Path(self.encoder).name if "/" in self.encoder else self.encoder
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[-40:] or "encoder"

    def data_file(self, name: str) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir / name


def keep_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret generated once and kept in ``path`` (0600), shared by every process on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process wrote it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
    return path.read_text().strip()
