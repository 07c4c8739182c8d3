"""Distinct, realistic citizen questions for load tests: texts no server has seen.

A hotline hears new wordings all day, so a benchmark that cycles through a few
hundred fixed questions measures the query-vector cache, not the bot (issue
13: 102 req/s on repeated texts, 6 on new ones with the old defaults). This
stream starts from the held-out paraphrases (bench/data, never indexed) and
the KB's own paraphrases, and varies them the way people write to a hotline:
a greeting or a "please", where they are and when, punctuation, a typo. Every
text it yields is new within the stream after normalisation (the bot's cache
key), and a different ``seed`` gives a different sequence, so runs do not
share texts by accident.

Never fed from ../shared/eval: those sets measure the bot; load stays ours.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

from bench.heldout import load_heldout
from bot.config import Settings
from bot.kb import load_knowledge_base
from bot.text import normalise

ZH_PREFIXES = ["", "", "你好，", "您好，", "请问", "请问一下，", "麻烦问下，", "打扰一下，", "想咨询一下，",
               "你好，我想问一下", "在吗？", "客服你好，", "小助手，", "问个事，", "急！"]
ZH_SUFFIXES = ["", "", "谢谢", "，谢谢！", "，麻烦了", "，在线等", "，急", "？谢谢您", "，请尽快回复",
               "，多谢", "啊", "呢", "，感谢"]
ZH_PLACES = ["北京朝阳区", "上海浦东", "广州天河", "深圳南山", "成都武侯区", "杭州西湖区", "武汉洪山区",
             "南京鼓楼区", "西安雁塔区", "重庆渝北", "天津河西区", "苏州工业园区", "郑州金水区", "长沙岳麓区",
             "青岛黄岛", "厦门思明区", "昆明五华区", "沈阳和平区"]
ZH_TIMES = ["明天", "后天", "今天下午", "这周末", "下周一", "下周三", "3月15号", "5月2日", "10月8号", "月底",
            "过两天", "国庆前", "春节前", "下个月初"]
ZH_CONTEXT = ["我在{place}，", "人在{place}，", "我们这里是{place}，", "{place}这边，", "我{time}要去{place}，",
              "我{time}从{place}回来，", "{time}的话，", "我是{place}的，"]
ZH_HOMOPHONES = {"在": "再", "的": "地", "做": "作", "吗": "嘛", "码": "马", "哪": "那", "已": "以",
                 "到": "倒", "个": "各", "吧": "把", "象": "像", "帐": "账"}

EN_PREFIXES = ["", "", "Hi, ", "Hello, ", "Hi there, ", "Excuse me, ", "Quick question: ", "Sorry to bother you, ",
               "Good morning, ", "Hey, ", "Hello, can you help? ", "Please help: "]
EN_SUFFIXES = ["", "", " thanks", " Thanks!", " thank you", " please", " Thanks in advance.", " cheers",
               " (asking for my mother)", " asap"]
EN_PLACES = ["Beijing", "Shanghai", "Guangzhou", "Shenzhen", "Chengdu", "Hangzhou", "Wuhan", "Nanjing",
             "Xi'an", "Chongqing", "Tianjin", "Suzhou", "Pudong", "Chaoyang district", "Tianhe"]
EN_TIMES = ["tomorrow", "next Monday", "this weekend", "on March 15", "on May 2", "at the end of the month",
            "next week", "in two days", "before the holiday"]
EN_CONTEXT = ["I'm in {place}, ", "I live in {place}, ", "I'm flying to {place} {time}, ",
              "I got back from {place} {time}, ", "Here in {place}, ", "I'm visiting {place} {time}. "]

_END_PUNCT = "?？!！。.～~ "


def _strip_end(text: str) -> str:
    return text.rstrip(_END_PUNCT)


def _is_english(text: str) -> bool:
    return sum(ch.isascii() for ch in text) > 0.8 * len(text)


class QuestionStream:
    """An endless iterator of distinct citizen questions (see the module docstring).

    ``base`` overrides the seed texts (tests); by default the held-out set and
    every KB paraphrase. Neither an indexed paraphrase nor an earlier text of
    the stream is ever yielded (compared after ``normalise``)."""

    def __init__(self, seed: int = 0, base: list[str] | None = None):
        self._rng = random.Random(seed)
        # Held-out texts go out unchanged once; KB paraphrases are indexed, so they always vary.
        self._verbatim: set[str] = set()
        known: set[str] = set()
        if base is None:
            kb = load_knowledge_base(Settings().knowledge_dir)
            indexed = [q for entry in kb.entries.values() for q in entry.questions.zh + entry.questions.en]
            known = {normalise(q) for q in indexed}
            base = [q.text for q in load_heldout()]
            self._verbatim = {text for text in base if normalise(text) not in known}
            base += indexed
        if not base:
            raise ValueError("no base questions")
        self._base = list(dict.fromkeys(base))
        self._seen: set[str] = set(known)  # indexed paraphrases never go out as they are
        self._fresh = list(self._base)
        self._rng.shuffle(self._fresh)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for _ in range(10_000):
            if self._fresh:
                original = self._fresh.pop()
                text = original if original in self._verbatim else self._vary(original)
            else:
                text = self._vary(self._rng.choice(self._base))
            key = normalise(text)
            if key not in self._seen:
                self._seen.add(key)
                return text
        raise RuntimeError("question variations exhausted")  # ~10^6 per base text: not reached

    def take(self, n: int) -> list[str]:
        return [next(self) for _ in range(n)]

    # -- variations --------------------------------------------------------------------------------

    def _vary(self, text: str) -> str:
        rng = self._rng
        english = _is_english(text)
        core = _strip_end(text)
        if rng.random() < 0.15:
            core = self._typo(core, english)
        context = ""
        if rng.random() < 0.45:
            template = rng.choice(EN_CONTEXT if english else ZH_CONTEXT)
            context = template.format(place=rng.choice(EN_PLACES if english else ZH_PLACES),
                                      time=rng.choice(EN_TIMES if english else ZH_TIMES))
        prefix = rng.choice(EN_PREFIXES if english else ZH_PREFIXES)
        suffix = rng.choice(EN_SUFFIXES if english else ZH_SUFFIXES)
        if english:
            if prefix or context:
                core = core[:1].lower() + core[1:] if core[:2] != "I " else core
            end = rng.choice(["?", "?", "", "??", "."])
            text = f"{prefix}{context}{core}{end}{suffix}"
        else:
            end = "" if suffix.startswith("，") else rng.choice(["？", "？", "", "?", "。", "？？"])
            text = f"{prefix}{context}{core}{end}{suffix}"
        return " ".join(text.split())

    def _typo(self, text: str, english: bool) -> str:
        rng = self._rng
        if english:
            words = text.split()
            long_words = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
            if not long_words:
                return text
            i = rng.choice(long_words)
            w = words[i]
            j = rng.randrange(1, len(w) - 2)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:] if rng.random() < 0.5 else w[:j] + w[j + 1:]
            return " ".join(words)
        positions = [i for i, ch in enumerate(text) if ch in ZH_HOMOPHONES]
        if positions:
            i = rng.choice(positions)
            return text[:i] + ZH_HOMOPHONES[text[i]] + text[i + 1:]
        i = rng.randrange(len(text))
        return text[:i] + text[i] + text[i:]  # a doubled character, as a slipped keypress makes


def repeated_questions(n: int = 200, seed: int = 0) -> list[str]:
    """A fixed pool of ``n`` held-out questions, for the vector-cache-warm runs."""
    texts = [q.text for q in load_heldout()]
    random.Random(seed).shuffle(texts)
    return texts[:n]
