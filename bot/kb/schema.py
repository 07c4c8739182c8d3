"""Schema of one FAQ entry, as KB editors write it in ``knowledge/faq/*.yml``."""
from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

ID_PATTERN = re.compile(r"^[a-z_]+\.[a-z0-9_]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Questions(_Strict):
    zh: list[str] = Field(min_length=3)
    en: list[str] = Field(min_length=2)

    @field_validator("zh", "en")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        for text in value:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("questions must be non-empty strings")
        return [text.strip() for text in value]


class Answer(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Source(_Strict):
    name: str = Field(min_length=1)
    name_en: str = Field(min_length=1)  # English answers name their source in English
    url: HttpUrl

    def title(self, language: str) -> str:
        return self.name_en if language == "en" else self.name


# What a question asks about the topic: "why is my code yellow" (cause) and "how do I turn it
# green" (remedy) share every content word, so entries say which aspect they answer.
Aspect = Literal["what", "cause", "remedy", "how", "cost", "where", "when", "duration", "eligibility",
                 "requirement", "contact", "difference"]


class Variant(_Strict):
    """The same question answered differently in one region (city or province)."""

    region: str = Field(min_length=1)
    answer: Answer
    source: Source | None = None  # defaults to the entry's
    updated: dt.date | None = None


class Entry(_Strict):
    id: str
    category: str
    questions: Questions
    answer: Answer
    source: Source
    updated: dt.date
    valid_until: dt.date | None = None
    region: str | None = None
    aspect: Aspect | None = None
    # Regional variants; the entry's own answer is the nationwide default.
    variants: list[Variant] = Field(default_factory=list)
    follow_ups: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("id must look like <category>.<snake_case>")
        return value

    def is_expired(self, today: dt.date) -> bool:
        return self.valid_until is not None and self.valid_until < today

    def title(self, language: str) -> str:
        """The first paraphrase: the entry's label on buttons and in agent views."""
        return (self.questions.en if language == "en" else self.questions.zh)[0]

    @property
    def variant_regions(self) -> list[str]:
        return [v.region for v in self.variants]

    def variant(self, region: str | None) -> Variant | None:
        """The variant written for exactly ``region`` (None: the nationwide default applies)."""
        return next((v for v in self.variants if v.region == region), None) if region else None

