"""The benchmark's corpus generator (bench/corpus.py): fixed by its seed, and with ``foreign``,
that share of its texts in other scripts."""

from __future__ import annotations

import json
from pathlib import Path

from bench import corpus


def _written(folder: Path, foreign: float) -> tuple[bytes, list[tuple[str, str]]]:
    texts = corpus.write(folder, 400, seed=3, files=2, foreign=foreign)
    spool = b"".join(p.read_bytes() for p in sorted((folder / "spool").iterdir()))
    pairs = [tuple(json.loads(line)) for line in texts.read_text(encoding="utf-8").splitlines()]
    return spool, pairs  # type: ignore[return-value]


def test_the_same_seed_writes_the_same_corpus(tmp_path: Path) -> None:
    assert _written(tmp_path / "a", 0.0) == _written(tmp_path / "b", 0.0)
    assert _written(tmp_path / "c", 0.5) == _written(tmp_path / "d", 0.5)


def test_foreign_puts_that_share_of_texts_in_other_scripts(tmp_path: Path) -> None:
    _, english = _written(tmp_path / "en", 0.0)
    _, mixed = _written(tmp_path / "mixed", 0.5)

    def share(pairs: list[tuple[str, str]]) -> float:
        return sum(not text.isascii() for _, text in pairs) / len(pairs)

    assert share(english) < 0.05  # the license texts hold a few names with accents
    assert 0.35 < share(mixed) < 0.65, share(mixed)


def test_every_floor_text_is_in_the_spool(tmp_path: Path) -> None:
    spool, pairs = _written(tmp_path, 0.3)
    written = spool.decode("utf-8")
    assert pairs and all(json.dumps(text, ensure_ascii=False) in written for _, text in pairs)
