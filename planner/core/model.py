"""The values every layer passes around: a request, its endpoint and lane, token counts, usage.

A request's ``body`` is kept in the provider's own wire shape for its endpoint (an OpenAI
request body, a Gemini ``GenerateContentRequest`` or ``EmbedContentRequest`` as REST JSON in
camelCase), so that what we estimate is exactly what we send and nothing is lost converting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class ProviderKind(StrEnum):
    """Which wire protocol family a provider speaks (also the price-catalog family)."""

    GEMINI = "gemini"
    OPENAI = "openai"


class Endpoint(StrEnum):
    """What a request asks for. OpenAI endpoints keep their URL path as the value."""

    CHAT_COMPLETIONS = "/v1/chat/completions"
    RESPONSES = "/v1/responses"
    EMBEDDINGS = "/v1/embeddings"
    GENERATE_CONTENT = "generateContent"
    EMBED_CONTENT = "embedContent"

    @property
    def is_embedding(self) -> bool:
        return self in _EMBEDDING_ENDPOINTS

    @property
    def wire(self) -> ProviderKind:
        """The body shape: OpenAI-style bodies or Gemini-native bodies."""
        return ProviderKind.GEMINI if self in _GEMINI_ENDPOINTS else ProviderKind.OPENAI


# asked several times per request: a set built once (a tuple of members built per call cost a
# class attribute look-up per member, ~5% of assessing a short embedding request)
_EMBEDDING_ENDPOINTS = frozenset({Endpoint.EMBEDDINGS, Endpoint.EMBED_CONTENT})
_GEMINI_ENDPOINTS = frozenset({Endpoint.GENERATE_CONTENT, Endpoint.EMBED_CONTENT})


class Lane(StrEnum):
    """How a request is (or would be) executed and therefore priced."""

    BATCH = "batch"
    INTERACTIVE = "interactive"
    FLEX = "flex"


@dataclass(frozen=True, slots=True)
class Measured:
    """What intake measured of a request once, so that no later stage encodes its body to JSON
    or runs the tokenizer over it again (``pipeline/measure.py``; the estimate and the packer
    read it). Every figure is exactly what the slow way would give: a property test holds
    each against its definition."""

    body_bytes: int  # UTF-8 bytes of the body as compact JSON
    line_bytes: int  # bytes of its line in a batch input file, newline included
    digest: bytes  # of model, endpoint and body (keys sorted): equal requests, equal digests
    encoding: str | None  # the BPE ``input_tokens`` was counted with; None: the chars/4 rule
    input_tokens: int  # the estimate rule's raw input tokens (``core/estimate.count_input``)
    method: str  # how they were counted, as ``TokenEstimate.method`` reports it
    output_given: int | None = None  # ``core/estimate.given_max_output`` of the request
    embedding_inputs: int = 0  # ``core/estimate.embedding_inputs`` of the request
    # the body as compact JSON with sorted keys, the text measured, on its way to the store
    # (which keeps it as it is: intake encodes no body again); None once stored or not kept
    body_json: str | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[type[Measured], tuple[Any, ...]]:
        """Pickled as its fields in order (read workers send every request across)."""
        b = self
        fields = (b.body_bytes, b.line_bytes, b.digest, b.encoding, b.input_tokens, b.method)
        return Measured, (*fields, b.output_given, b.embedding_inputs, b.body_json)


BODY_NOT_LOADED: Mapping[str, Any] = MappingProxyType({})
"""The body of a request read from the store without it: planning a measured request needs
only its ``Measured`` facts (``store.requests.queued_for_planning(bodies=False)``)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One unit of work as ingested; immutable. ``(source, key)`` identifies it."""

    source: str
    key: str
    model: str
    endpoint: Endpoint
    body: Mapping[str, Any]
    received_at: datetime
    deadline: datetime | None = None
    max_output_tokens: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""  # where it came from, e.g. "spool/a.jsonl:12", for messages
    # measured once at intake (None: not measured; the estimate counts it when asked)
    measured: Measured | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[Callable[..., Request], tuple[Any, ...]]:
        """Pickled as its fields in order: read workers send every request across, and the
        default for a frozen dataclass with slots (a state dict set field by field) costs
        three times as much. A body not loaded stays ``BODY_NOT_LOADED`` (the same object)."""
        r = self
        rest = (r.deadline, r.max_output_tokens, r.metadata, r.origin, r.measured)
        if r.body is BODY_NOT_LOADED:
            return _bodiless, (r.source, r.key, r.model, r.endpoint, r.received_at, *rest)
        return Request, (r.source, r.key, r.model, r.endpoint, r.body, r.received_at, *rest)

    def without_body(self) -> Request:
        """This request with its body ``BODY_NOT_LOADED``: for a reader that plans from the
        ``Measured`` facts and would only pay to carry the body along."""
        r = self
        rest = (r.deadline, r.max_output_tokens, r.metadata, r.origin, r.measured)
        return _bodiless(r.source, r.key, r.model, r.endpoint, r.received_at, *rest)


def _bodiless(
    source: str,
    key: str,
    model: str,
    endpoint: Endpoint,
    received_at: datetime,
    *rest: Any,
) -> Request:
    """A request unpickled without its body (``Request.__reduce__``)."""
    return Request(source, key, model, endpoint, BODY_NOT_LOADED, received_at, *rest)


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """Estimated tokens of one request. ``method`` says how (e.g. ``tiktoken:o200k_base``)."""

    input_tokens: int
    output_tokens: int
    method: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Billed tokens of one executed request, normalised across providers.

    ``input_tokens`` includes ``cached_input_tokens``; ``output_tokens`` includes reasoning /
    thinking tokens (both are billed at the output rate by both providers).
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
