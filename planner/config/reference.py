"""The configuration reference as Markdown, generated from the schema's field descriptions.

The README's "Configuration reference" section is this output between two marker comments;
``python -m planner.config`` prints it, and a test keeps the README equal to it.
"""

from planner.config.schema import reference_rows


def reference_markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, description in reference_rows():
        cells = (key, kind, default, description)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
