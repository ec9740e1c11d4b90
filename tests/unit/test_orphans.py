"""core.orphans: which of our uploaded files housekeeping may delete (table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from planner.core.orphans import (
    ACTIVE_BATCH_STATES,
    DONE_BATCH_STATES,
    ORPHAN_MIN_AGE,
    OurFile,
    Verdict,
    batch_id_from_file_name,
    judge,
    needs_remote_check,
)
from planner.core.states import BatchState
from planner.providers import gemini_wire, openai_wire
from planner.store.batches import new_batch_id

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ID = "plb_" + "0123456789abcdef" * 2
B = BatchState


def test_every_batch_state_is_either_active_or_done() -> None:
    assert set(BatchState) == ACTIVE_BATCH_STATES | DONE_BATCH_STATES
    assert not ACTIVE_BATCH_STATES & DONE_BATCH_STATES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"planner-{ID}.jsonl", ID),  # OpenAI filename, compat display name
        (f"planner-{ID}", ID),  # Gemini display name
        (f"planner-{ID}.json", None),
        (f"planner-{ID}x", None),
        (f"planner-{ID.upper()}", None),  # our ids are lower-case hex
        ("planner-notes.jsonl", None),  # an operator's file that merely starts like ours
        (f"other-{ID}.jsonl", None),
        ("planner-", None),
        (None, None),
        (42, None),
    ],
)
def test_batch_id_from_file_name(name: object, expected: str | None) -> None:
    assert batch_id_from_file_name(name) == expected


def test_the_names_we_upload_under_are_recognised() -> None:
    batch_id = new_batch_id()
    assert batch_id_from_file_name(openai_wire.input_filename(batch_id)) == batch_id
    assert batch_id_from_file_name(gemini_wire.file_display_name(batch_id)) == batch_id


def _file(age: timedelta | None) -> OurFile:
    return OurFile("file-1", ID, None if age is None else NOW - age)


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("state", "age", "remote_unfinished", "expected"),
    [
        # in flight in the store: kept at any age (a create may still adopt the upload)
        (B.PLANNED, 30 * HOUR, False, Verdict.KEEP_ACTIVE),
        (B.UPLOADING, 30 * HOUR, False, Verdict.KEEP_ACTIVE),
        (B.SUBMITTED, 30 * HOUR, False, Verdict.KEEP_ACTIVE),
        (B.RUNNING, 30 * HOUR, False, Verdict.KEEP_ACTIVE),
        # finished: deleted at any age, even one second old
        (B.SUCCEEDED, timedelta(seconds=1), False, Verdict.DELETE_FINISHED),
        (B.FAILED, timedelta(0), False, Verdict.DELETE_FINISHED),
        (B.EXPIRED, HOUR, False, Verdict.DELETE_FINISHED),
        (B.CANCELLED, HOUR, False, Verdict.DELETE_FINISHED),
        (B.COLLECTED, None, False, Verdict.DELETE_FINISHED),
        # the store's state wins over the provider's listing
        (B.COLLECTED, HOUR, True, Verdict.DELETE_FINISHED),
        # unknown to the store: by age, the edge exactly at min_age deletes
        (None, HOUR - timedelta(seconds=1), False, Verdict.KEEP_YOUNG),
        (None, HOUR, False, Verdict.DELETE_UNKNOWN),
        (None, 30 * HOUR, False, Verdict.DELETE_UNKNOWN),
        (None, None, False, Verdict.KEEP_YOUNG),  # no creation time: never guessed old
        (None, 30 * HOUR, True, Verdict.KEEP_REMOTE_ACTIVE),  # a replica's batch in flight
    ],
)
def test_judge(
    state: BatchState | None, age: timedelta | None, remote_unfinished: bool, expected: Verdict
) -> None:
    unfinished = {ID} if remote_unfinished else set()
    verdict = judge(_file(age), state, NOW, min_age=HOUR, remote_unfinished=unfinished)
    assert verdict is expected
    assert verdict.delete is expected.value.startswith("delete")


def test_judge_defaults_to_one_hour() -> None:
    assert ORPHAN_MIN_AGE == HOUR
    assert judge(_file(59 * timedelta(minutes=1)), None, NOW) is Verdict.KEEP_YOUNG
    assert judge(_file(61 * timedelta(minutes=1)), None, NOW) is Verdict.DELETE_UNKNOWN


def test_needs_remote_check_only_for_old_files_of_unknown_batches() -> None:
    known = OurFile("f-known", "plb_known", NOW - 9 * HOUR)
    young = OurFile("f-young", "plb_young", NOW - timedelta(minutes=5))
    undated = OurFile("f-undated", "plb_undated", None)
    old = OurFile("f-old", "plb_old", NOW - 2 * HOUR)
    older = OurFile("f-older", "plb_older", NOW - 3 * HOUR)
    states = {"plb_known": B.COLLECTED}
    assert needs_remote_check([known, young, undated], states, NOW, HOUR) is None
    assert needs_remote_check([known, old, young, older], states, NOW, HOUR) == NOW - 3 * HOUR
    assert needs_remote_check([], states, NOW, HOUR) is None


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        (
            {
                "id": "file-1",
                "purpose": "batch",
                "filename": f"planner-{ID}.jsonl",
                "created_at": 0,
            },
            OurFile("file-1", ID, datetime(1970, 1, 1, tzinfo=UTC)),
        ),
        ({"id": "file-1", "purpose": "batch_output", "filename": f"planner-{ID}.jsonl"}, None),
        ({"id": "file-1", "purpose": "batch", "filename": "mine.jsonl"}, None),
        ({"id": "", "purpose": "batch", "filename": f"planner-{ID}.jsonl"}, None),
        (
            {"id": "file-2", "purpose": "batch", "filename": f"planner-{ID}.jsonl"},
            OurFile("file-2", ID, None),
        ),
    ],
)
def test_openai_parse_file(file: dict[str, object], expected: OurFile | None) -> None:
    assert openai_wire.parse_file(file) == expected


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        (
            {
                "name": "files/abc",
                "displayName": f"planner-{ID}",
                "createTime": "2026-11-28T10:00:00.123456789Z",
                "source": "UPLOADED",
            },
            OurFile("files/abc", ID, datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)),
        ),
        (  # uploaded through the compat layer's adapter
            {"name": "files/abc", "displayName": f"planner-{ID}.jsonl"},
            OurFile("files/abc", ID, None),
        ),
        ({"name": "files/abc", "displayName": f"planner-{ID}", "source": "GENERATED"}, None),
        ({"name": "files/batch-123", "displayName": f"planner-{ID}"}, None),  # results file
        ({"name": "files/abc", "displayName": "gen-input"}, None),
        ({"displayName": f"planner-{ID}"}, None),
    ],
)
def test_gemini_parse_file(file: dict[str, object], expected: OurFile | None) -> None:
    assert gemini_wire.parse_file(file) == expected
