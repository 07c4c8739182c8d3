"""One typed settings object for the whole bot.

Values come from env vars with the ``HOTLINE_`` prefix (``DATABASE_URL`` is also
honoured unprefixed, as deploy tooling usually sets it), then an optional
``hotline.env`` file, then the defaults below, which run on one machine with
nothing else installed.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Thresholds(BaseModel):
    """Decision thresholds. Defaults come from ``knowledge/thresholds/<encoder>.yml``
    (scores of different encoders live on different scales), which
    ``bench/calibrate.py`` writes from held-out data; an operator can
    override one with ``HOTLINE_THRESHOLD_<NAME>``."""

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

    @classmethod
    def load(cls, path: Path) -> "Thresholds":
        values: dict = {}
        if path.exists():
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        values = {k: v for k, v in values.items() if k in cls.model_fields}
        for name, info in cls.model_fields.items():
            raw = os.environ.get(f"HOTLINE_THRESHOLD_{name.upper()}")
            if raw is not None and info.annotation is float:
                values[name] = float(raw)
        return cls(**values)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_file="hotline.env", extra="ignore"
    )

    knowledge_dir: Path = PROJECT_ROOT / "knowledge"
    data_dir: Path = PROJECT_ROOT / "var"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("HOTLINE_DATABASE_URL", "DATABASE_URL")
    )
    # Bearer token for the staff-only read API (transcripts, tickets). Unset = open, for one-machine
    # development; set it in production.
    api_token: str | None = None
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0: wake-ups across processes/hosts
    encoder: str = "use"  # "use" | "e5" | path to a local sentence-transformers model folder
    # BLAS threads per encoder call. 1 while serving: request threads run encodes side by side,
    # and OpenBLAS's own pool serialises concurrent callers (measured with 16 request threads and
    # distinct texts: 2 threads -> 78 encodes/s, 1 thread -> 158/s on 2 cores).
    encoder_threads: int = 1
    max_message_chars: int = 2000
    max_failures_before_handoff: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    server_threads: int = 32  # the widget long-polls (≤20 s): waiting citizens each hold a thread
    thresholds_file: Path | None = None

    @field_validator("max_message_chars", "encoder_threads", "server_threads")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be >= 1")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # psycopg 3 is the installed driver; plain postgresql:// would pick psycopg2.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{self.data_dir / 'hotline.db'}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @cached_property
    def thresholds(self) -> Thresholds:
        return Thresholds.load(self.thresholds_file or self.knowledge_dir / "thresholds" / f"{self.encoder_key}.yml")

    @property
    def encoder_key(self) -> str:
        """A file-name-safe name for the encoder (``use``, ``e5`` or a model folder's name)."""
        name = Path(self.encoder).name if "/" in self.encoder else self.encoder
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[-40:] or "encoder"
