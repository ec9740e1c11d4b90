"""sources.<name>.default_models: one model per wire format, each of the right family and kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.config import load_config, validate_file

REPO = Path(__file__).resolve().parents[2]
BASE = """providers:
  openai: {kind: openai}
  gemini: {kind: gemini}
sources:
  s:
    kind: jsonl_dir
    path: s
    default_models:
      %s
"""


def _problems(tmp_path: Path, slot_line: str) -> list[str]:
    file = tmp_path / "planner.yaml"
    file.write_text(BASE % slot_line, encoding="utf-8")
    return validate_file(file)


@pytest.mark.parametrize(
    ("slot_line", "expected"),
    [
        ("gemini_embed: text-embedding-3-small", ":9:21: 'text-embedding-3-small' is not a Gemini"),
        ("openai_chat: gemini-2.5-flash", ":9:20: 'gemini-2.5-flash' is not an OpenAI model"),
        (
            "gemini_generate: gemini-embedding-001",
            ":9:24: 'gemini-embedding-001' is an embedding model; expected a chat",
        ),
        (
            "openai_embeddings: gpt-4o-mini",
            ":9:26: 'gpt-4o-mini' is a chat model; expected an embedding",
        ),
        ("openai_chat: gpt-4o-mni", ":9:20: unknown model 'gpt-4o-mni'"),
        ("gemini_chat: gemini-2.5-flash", ":9:7:"),  # no such slot
    ],
)
def test_a_wrong_default_is_refused_where_it_is_written(
    tmp_path: Path, slot_line: str, expected: str
) -> None:
    problems = _problems(tmp_path, slot_line)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_the_example_sets_all_four() -> None:
    cfg = load_config(REPO / "config" / "planner.example.yaml")
    assert cfg.sources["spool"].default_models.model_dump() == {
        "openai_chat": "gpt-4o-mini",
        "openai_embeddings": "text-embedding-3-small",
        "gemini_generate": "gemini-3.5-flash-lite",
        "gemini_embed": "gemini-embedding-001",
    }
