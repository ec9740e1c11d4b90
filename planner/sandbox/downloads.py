"""A stored file's bytes as a download response, streamed when the file is on disk.

The real services stream a results file however large it is; the emulator read it whole into
one ``bytes`` first (a batch of 10,000 embeddings of 1,536 floats is about 300 MB). A file kept
in memory (``kernel.SPILL_BYTES`` or less) is answered as it is; a larger one is sent a block at
a time from its temporary file, with its length announced, as the services do.
"""

from __future__ import annotations

from fastapi.responses import Response, StreamingResponse

from planner.sandbox.kernel import StoredFile


def download_response(stored: StoredFile, media_type: str) -> Response:
    """The whole file, ``200``, ``media_type``; its ``content-length`` known either way."""
    blob = stored.blob
    if not blob.on_disk:
        return Response(content=blob.read(), media_type=media_type)
    return StreamingResponse(
        blob.blocks(), media_type=media_type, headers={"content-length": str(blob.size)}
    )
