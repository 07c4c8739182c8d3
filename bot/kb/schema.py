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
    # Entries whose question this one's answer also answers, in general terms (health_code.back_to_green covers
    # the yellow and the red remedy): a near-tie with one of them is not a choice to offer (see
    # bot.retrieval.hybrid.prefer_specific).
    covers: list[str] = Field(default_factory=list)

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



CONTACT_ID = re.compile(r"^[a-z0-9_]+$")
CONTACT_REF = re.compile(r"\{\{contact:([^}]*)\}\}")
ContactKind = Literal["hotline", "health_commission", "testing_site", "community_office", "other"]


class Contact(_Strict):
    """One entry of the contact directory (``contacts.yml``): answers embed it as ``{{contact:<id>}}``,
    so a changed number is edited once."""

    id: str
    kind: ContactKind
    name: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    region: str | None = None  # gazetteer name; None: nationwide
    phone: str = Field(min_length=3, max_length=40)
    hours: str | None = None
    hours_en: str | None = None
    address: str | None = None
    address_en: str | None = None
    source: HttpUrl | None = None
    last_verified: dt.date

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not CONTACT_ID.match(value):
            raise ValueError("id must be lower-case letters, digits and _ (e.g. beijing_12345)")
        return value

    def render(self, language: str) -> str:
        """The contact as it appears inside an answer."""
        if language == "en":
            extra = ", ".join(x for x in (self.hours_en or self.hours, self.address_en or self.address) if x)
            return f"{self.name_en}: {self.phone}" + (f" ({extra})" if extra else "")
        extra = "，".join(x for x in (self.hours, self.address) if x)
        return f"{self.name}：{self.phone}" + (f"（{extra}）" if extra else "")


def expand_contacts(text: str, contacts: dict[str, Contact], language: str) -> str:
    """``{{contact:id}}`` replaced by the contact's name, number and hours (validated: ids exist)."""
    if "{{contact:" not in text:
        return text
    return CONTACT_REF.sub(lambda m: contacts[m.group(1)].render(language) if m.group(1) in contacts
                           else m.group(0), text)
