"""Responses the emulator builds from large values: JSON written by msgspec, files streamed.

A Gemini batch read answers with every inline response of the batch (the real API does), and
``json`` writing that was a fifth of the emulator's time serving ``run --once`` (0.2 s of its
1.0 s of requests at 20,000): :class:`WireJSONResponse` writes it with ``wire_json`` instead.

The real services stream a results file however large it is; the emulator read it whole into
one ``bytes`` first (a batch of 10,000 embeddings of 1,536 floats is about 300 MB).
:func:`download_response` answers a file kept in memory (``kernel.SPILL_BYTES`` or less) as it
is and sends a larger one a block at a time from its temporary file, with its length announced,
as the services do.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from planner.sandbox import wire_json
from planner.sandbox.kernel import StoredFile


class WireJSONResponse(JSONResponse):
    """A ``JSONResponse`` whose body ``wire_json`` writes (compact, UTF-8, as Starlette's; the
    emulator's values are finite, so ``NaN`` never needs refusing)."""

    def render(self, content: Any) -> bytes:
        return wire_json.encode(content)


def download_response(stored: StoredFile, media_type: str) -> Response:
    """The whole file, ``200``, ``media_type``; its ``content-length`` known either way."""
    blob = stored.blob
    if not blob.on_disk:
        return Response(content=blob.read(), media_type=media_type)
    return StreamingResponse(
        blob.blocks(), media_type=media_type, headers={"content-length": str(blob.size)}
    )
