"""Where the citizen is, or is going: a gazetteer of Chinese provinces and cities.

Rules differ by city (arrival testing in 北京 vs 上海), so an entry may carry
regional variants. ``knowledge/regions.yml`` lists every provincial-level and
prefecture-level division with short forms and English names; this module
finds them in a question and says which one matters.

Which place matters when several are named: the DESTINATION (去/到/回/前往/来,
"to", "arriving in"), because the KB's regional rules are arrival and local
rules of the place a citizen goes to ("我在上海，去北京要隔离吗" → 北京市); then
where the citizen says they are (在/住在, "in"); then any other mention; the
ORIGIN (从/离开, "from") only when nothing else is named.
"""
from __future__ import annotations

from bot.yaml_files import load_yaml

import re
from dataclasses import dataclass
from pathlib import Path


REGIONS_FILE = "regions.yml"
NATIONWIDE = "全国"

# Auto-derived short forms that are ambiguous or common words; the province keeps 吉林 / 海南.
_NO_AUTO_SHORT = {"吉林市", "朝阳市", "海南藏族自治州", "白山市", "中山市", "通化市", "新北市"}

_ROLE_BEFORE = [
    ("destination", re.compile(r"(去|到|回|前往|来|进|入|返回|抵达|飞|赴)(了)?$")),
    ("location", re.compile(r"(在|住在|人在|身在|位于|我是|我们是|我们)$")),
    ("origin", re.compile(r"(从|离开|出|由)$")),
]
_ROLE_BEFORE_EN = [
    ("destination", re.compile(r"\b(to|into|arriving (in|at)|arrive (in|at)|visit(ing)?|entering)\s+$")),
    ("location", re.compile(r"\b(in|at|live in|living in|based in)\s+$")),
    ("origin", re.compile(r"\b(from|leaving|leave)\s+$")),
]
_RANK = {"destination": 0, "location": 1, "mention": 2, "origin": 3}


@dataclass(frozen=True)
class Region:
    name: str           # canonical Chinese name: 北京市, 广州市, 广东省
    province: str       # the provincial-level division (itself for a province or municipality)
    en: str | None = None

    def title(self, language: str) -> str:
        if language == "en" and self.en:
            return self.en
        return self.name


@dataclass(frozen=True)
class Mention:
    region: Region
    role: str  # destination | location | origin | mention
    start: int


class Gazetteer:
    def __init__(self, regions: list[Region], surface: dict[str, str], abbreviations: dict[str, str]):
        self.regions = {r.name: r for r in regions}
        self._surface = surface            # lower-case surface form -> canonical name
        self._abbr = abbreviations         # one-character abbreviation -> canonical name
        forms = sorted(surface, key=len, reverse=True)
        zh = [re.escape(f) for f in forms if not f.isascii()]
        en = [re.escape(f) for f in forms if f.isascii()]
        parts = []
        if zh:
            parts.append("(" + "|".join(zh) + ")")
        if en:
            parts.append(r"\b(" + "|".join(en) + r")\b")
        self._pattern = re.compile("|".join(parts)) if parts else None

    @classmethod
    def from_file(cls, path: Path) -> "Gazetteer":
        data = load_yaml(Path(path)) or {}
        city_en = data.get("city_en") or {}
        regions: list[Region] = []
        surface: dict[str, str] = {}
        abbr: dict[str, str] = {}

        def add(form: str, name: str, overwrite: bool = False) -> None:
            form = form.strip().lower()
            if form and (overwrite or form not in surface):
                surface[form] = name

        for province in data.get("provinces") or []:
            pname = str(province["name"])
            regions.append(Region(pname, pname, province.get("en")))
            add(pname, pname, overwrite=True)
            for short in province.get("short") or []:
                add(str(short), pname, overwrite=True)
            if province.get("en"):
                add(str(province["en"]), pname, overwrite=True)
            if province.get("abbr"):
                abbr[str(province["abbr"])] = pname
            for raw in province.get("cities") or []:
                full, _, shorts = str(raw).partition("/")
                regions.append(Region(full, pname, city_en.get(full)))
                add(full, full, overwrite=True)
                for short in filter(None, shorts.split("/")):
                    add(short, full)
                if full not in _NO_AUTO_SHORT:
                    stem = re.sub(r"(市|地区|盟|林区)$", "", full)
                    if len(stem) >= 2 and stem != full:
                        add(stem, full)
                if city_en.get(full):
                    add(str(city_en[full]), full)
        return cls(regions, surface, abbr)

    def get(self, name: str | None) -> Region | None:
        if not name:
            return None
        return self.regions.get(name) or self.regions.get(self._surface.get(name.strip().lower(), ""))

    def mentions(self, normalised_text: str) -> list[Mention]:
        text = normalised_text.strip()
        if text in self._abbr:
            return [Mention(self.regions[self._abbr[text]], "location", 0)]
        if self._pattern is None:
            return []
        out = []
        for match in self._pattern.finditer(text):
            form = match.group(0)
            region = self.regions[self._surface[form.lower()]]
            before = text[max(0, match.start() - 12):match.start()]
            role = "mention"
            for name, pattern in (_ROLE_BEFORE_EN if form.isascii() else _ROLE_BEFORE):
                if pattern.search(before):
                    role = name
                    break
            out.append(Mention(region, role, match.start()))
        return out

    def relevant(self, normalised_text: str) -> Region | None:
        """The place whose rules apply (destination > location > mention > origin), or None."""
        mentions = self.mentions(normalised_text)
        if not mentions:
            return None
        return min(mentions, key=lambda m: (_RANK[m.role], m.start)).region

    def matches(self, region_name: str, wanted: str | None) -> bool:
        """Does a variant written for ``region_name`` apply to a citizen in ``wanted``?
        A city variant applies to that city; a province variant to the province and its cities."""
        if not wanted:
            return False
        if region_name == wanted:
            return True
        region = self.regions.get(wanted)
        return region is not None and region.province == region_name
