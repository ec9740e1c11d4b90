"""``python -m planner.config``: print the configuration reference (see ``reference``)."""

from planner.config.reference import reference_markdown

print(reference_markdown(), end="")
