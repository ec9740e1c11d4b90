"""The README's configuration reference is exactly what the schema says (no drift)."""

from planner.config.reference import reference_markdown
from tests.conftest import REPO

BEGIN = "<!-- config-reference:begin (python -m planner.config) -->\n"
END = "<!-- config-reference:end -->"


def test_readme_reference_matches_the_schema() -> None:
    readme = (REPO / "README.md").read_text()
    assert BEGIN in readme and END in readme
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block == reference_markdown(), "regenerate with: python -m planner.config"
