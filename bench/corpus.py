"""A mixed spool corpus with a fixed seed, built from text that ships with the OS.

The words come from ``/usr/share/common-licenses`` (Debian and Ubuntu ship it); elsewhere from
Python's own documentation (``pydoc_data.topics``). Texts are contiguous runs of those words,
so they tokenize like prose. The mix, per request:

* 45% OpenAI batch lines for ``/v1/chat/completions`` (``gpt-4o-mini``, o200k_base): one of
  24 system prompts (a few are much more common than the rest, as in real traffic), then 1-7
  turns; the user texts' lengths are long-tailed (Pareto, capped at 6,000 words);
* 10% simple ``prompt`` lines (the default chat model, o200k_base), long-tailed too;
* 30% simple embedding lines (``text-embedding-3-small``, cl100k_base), 4-60 words;
* 15% Gemini batch lines (``gemini-3.5-flash-lite`` generate, a fifth of them
  ``gemini-embedding-001``), which need no tokenizer.

With ``foreign`` (``python -m bench --foreign 0.4``), that share of the texts is in other
scripts: words of one locale of the OS's locale sources (``/usr/share/i18n/locales``: Cyrillic,
Arabic, Devanagari, CJK, Thai ... month and day names, language and country names), drawn at
random. tiktoken counts such text slower than English prose (the floor of 100,000 requests
with 40% of it took ~9 s where the English corpus's took ~4.5 s) and toktok gains less over it
there (~6.5x against ~9x).

Next to the spool it writes ``texts.jsonl``: ``[encoding, text]`` for exactly the texts the
floor must tokenize (chat message contents with o200k_base, embedding inputs with cl100k_base).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

CHAT_ENCODING = "o200k_base"
EMBED_ENCODING = "cl100k_base"
LICENSES = Path("/usr/share/common-licenses")
LOCALES = Path("/usr/share/i18n/locales")
_CODE_POINT = re.compile(r"<U([0-9A-Fa-f]{4,8})>")
_QUOTED = re.compile(r'"((?:<U[0-9A-Fa-f]{4,8}>)+)"')


def words() -> list[str]:
    """Every word of the OS's license texts, in order (Python's docs if there are none)."""
    text = ""
    if LICENSES.is_dir():
        text = " ".join(
            p.read_text(errors="replace") for p in sorted(LICENSES.iterdir()) if p.is_file()
        )
    if len(text) < 100_000:
        from pydoc_data.topics import topics

        text += " ".join(topics[k] for k in sorted(topics))
    return re.findall(r"\S+", text)


def foreign_words() -> list[list[str]]:
    """Each locale's words that are not ASCII, from the OS's locale sources (their strings are
    written as ``<U0434><U0430>``); locales with fewer than 20 are left out. Empty where the
    sources are not installed (Debian's ``locales`` package)."""
    by_locale: list[list[str]] = []
    if not LOCALES.is_dir():
        return by_locale
    for path in sorted(LOCALES.iterdir()):
        if not path.is_file():
            continue
        found: set[str] = set()
        for quoted in _QUOTED.findall(path.read_text(errors="replace")):
            text = _CODE_POINT.sub(lambda m: chr(int(m.group(1), 16)), quoted)
            found.update(w for w in text.split() if not w.isascii() and any(map(str.isalpha, w)))
        if len(found) >= 20:
            by_locale.append(sorted(found))
    return by_locale


class Corpus:
    """Deterministic texts: the same seed gives the same corpus, byte for byte."""

    def __init__(self, seed: int, foreign: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.words = words()
        self.foreign = foreign
        self.locales = foreign_words() if foreign > 0 else []
        if foreign > 0 and not self.locales:
            raise SystemExit(f"--foreign needs the OS's locale sources ({LOCALES}): not found")
        self.systems = [self.text(self.rng.randint(30, 400)) for _ in range(24)]

    def text(self, n: int) -> str:
        if self.foreign > 0 and self.rng.random() < self.foreign:
            words = self.rng.choice(self.locales)
            return " ".join(self.rng.choices(words, k=n))
        start = self.rng.randrange(0, len(self.words) - n)
        return " ".join(self.words[start : start + n])

    def long_tail(self, scale: int, cap: int) -> int:
        return min(cap, int(scale * self.rng.paretovariate(1.2)))

    def system(self) -> str:
        # index ~ geometric: prompt 0 is the most common, the last ones are rare
        return self.systems[min(23, int(self.rng.expovariate(0.35)))]

    def chat(self, i: int, floor: list[tuple[str, str]]) -> dict[str, object]:
        messages = [{"role": "system", "content": self.system()}]
        for turn in range(self.rng.choice((1, 1, 1, 3, 3, 5, 7))):
            role = "user" if turn % 2 == 0 else "assistant"
            messages.append({"role": role, "content": self.text(self.long_tail(25, 6000))})
        floor.extend((CHAT_ENCODING, str(m["content"])) for m in messages)
        body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 300}
        return {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}

    def prompt(self, i: int, floor: list[tuple[str, str]]) -> dict[str, object]:
        text = self.text(self.long_tail(15, 3000))
        floor.append((CHAT_ENCODING, text))
        return {"id": f"p{i}", "prompt": text, "max_output_tokens": 200}

    def embedding(self, i: int, floor: list[tuple[str, str]]) -> dict[str, object]:
        text = self.text(self.rng.randint(4, 60))
        floor.append((EMBED_ENCODING, text))
        return {"id": f"e{i}", "model": "text-embedding-3-small", "text": text}

    def gemini(self, i: int) -> dict[str, object]:
        text = self.text(self.long_tail(20, 4000))
        if self.rng.random() < 0.2:
            request: dict[str, object] = {"content": {"parts": [{"text": text[:2000]}]}}
            return {"key": f"ge{i}", "model": "gemini-embedding-001", "request": request}
        request = {
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {"maxOutputTokens": 256},
        }
        return {"key": f"g{i}", "model": "gemini-3.5-flash-lite", "request": request}

    def line(self, i: int, floor: list[tuple[str, str]]) -> dict[str, object]:
        roll = self.rng.random()
        if roll < 0.45:
            return self.chat(i, floor)
        if roll < 0.55:
            return self.prompt(i, floor)
        if roll < 0.85:
            return self.embedding(i, floor)
        return self.gemini(i)


def write(folder: Path, n: int, seed: int, files: int = 4, foreign: float = 0.0) -> Path:
    """``n`` requests in ``files`` spool files under ``folder/spool``; returns ``texts.jsonl``."""
    corpus = Corpus(seed, foreign)
    spool = folder / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    texts = folder / "texts.jsonl"
    outs = [(spool / f"part-{k}.jsonl").open("w", encoding="utf-8") for k in range(files)]
    with texts.open("w", encoding="utf-8") as floor_file:
        for i in range(n):
            floor: list[tuple[str, str]] = []
            line = corpus.line(i, floor)
            outs[i % files].write(json.dumps(line, ensure_ascii=False) + "\n")
            floor_file.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in floor)
    for out in outs:
        out.close()
    return texts
