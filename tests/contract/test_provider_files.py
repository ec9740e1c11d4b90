"""The provider port's file calls (``list_our_files``, ``delete_file``) on every implementation
(gemini, openai, and Gemini's compat layer, whose files go through the native Files API),
through the sandbox with the unmodified SDKs.

What it pins down: a batch's input file is listed with our batch id and its creation time,
across pages; files not named like ours and generated results files are not listed; a deleted
file is gone, and deleting it again is not an error.
"""

from __future__ import annotations

import pytest

from planner.core.states import BatchState
from planner.sandbox import RunningSandbox
from planner.store.batches import new_batch_id
from tests.contract.test_providers import CASES, IMPLS, finish, lines_for, make_provider, submit

FILE_CASES = {impl: next(c for c in CASES if c.impl == impl and c.mode == "file") for impl in IMPLS}


@pytest.mark.parametrize("impl", IMPLS)
def test_our_uploads_are_listed_by_batch_id_and_can_be_deleted(
    impl: str, sandbox: RunningSandbox
) -> None:
    case = FILE_CASES[impl]
    provider = make_provider(impl, sandbox, list_page_size=2, **case.options)
    ids = [new_batch_id() for _ in range(3)]  # three batches: more than one page of files
    remotes = {}
    for batch_id in ids:
        remote, _ = submit(provider, batch_id, lines_for(case, n=2, prefix=batch_id))
        remotes[batch_id] = remote
    first = ids[0]
    done = finish(provider, sandbox, remotes[first].remote_id)
    assert done.state is BatchState.SUCCEEDED

    listed = {f.batch_id: f for f in provider.list_our_files()}
    assert sorted(listed) == sorted(ids)  # inputs only: no results files, nothing else
    for batch_id, remote in remotes.items():
        assert listed[batch_id].file_id == remote.input_file_id
        assert listed[batch_id].created_at is not None

    provider.delete_file(listed[first].file_id)
    provider.delete_file(listed[first].file_id)  # already gone: fine
    assert sorted(f.batch_id for f in provider.list_our_files()) == sorted(ids[1:])
    # the batch's results are still there: deleting an input never touches them
    results = list(provider.fetch_results(done, [f"{first}-{impl}-{i}" for i in range(2)]))
    assert all(r.ok for r in results)


@pytest.mark.parametrize("impl", [i for i in IMPLS if i != "openai"])
def test_a_results_file_is_streamed_to_disk_and_read_whole(
    impl: str, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Gemini results file goes through a temporary file (here on disk from its 17th byte,
    as a large one would): every result is still read, each once, and the file is closed."""
    import tempfile

    from planner.providers import gemini

    spooled: list[tempfile.SpooledTemporaryFile[bytes]] = []
    real = tempfile.SpooledTemporaryFile

    def tiny(*args: object, **kwargs: object) -> tempfile.SpooledTemporaryFile[bytes]:
        spooled.append(real(max_size=16))
        return spooled[-1]

    monkeypatch.setattr(gemini.tempfile, "SpooledTemporaryFile", tiny)
    case = FILE_CASES[impl]
    provider = make_provider(impl, sandbox, **case.options)
    batch_id = new_batch_id()
    remote, _ = submit(provider, batch_id, lines_for(case, n=5, prefix=batch_id))
    done = finish(provider, sandbox, remote.remote_id)
    keys = [f"{batch_id}-{impl}-{i}" for i in range(5)]
    before = len(spooled)  # the upload's own temporary file is the submit helper's to close
    results = list(provider.fetch_results(done, keys))
    assert sorted(r.key for r in results) == sorted(keys)
    assert all(r.ok for r in results)
    downloads = spooled[before:]
    assert downloads and all(f._rolled for f in downloads)  # type: ignore[attr-defined]
    assert all(f.closed for f in downloads)
