"""`WireFormat`: how a protocol's bodies map onto the one predict pipeline.

modelserve's own JSON is the pipeline's default and needs no wire format. Another protocol (the
Open Inference Protocol V2, OpenAI's embeddings) opens its calls with one: the pipeline runs the
same steps (authentication, limits, the version the traffic policy picks, the engine, the
access record) and asks the format only for what differs, the request body's media type, how a
body becomes the model's inputs, how outputs and errors are written. A call with a wire format
is always a batch call: a protocol request with N rows is N inputs of one engine batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelserve.http.errors import error_body

if TYPE_CHECKING:
    from modelserve.http.codec import Headers, ServiceCodec
    from modelserve.http.pipeline import PredictCall


class WireFormat:
    """Base class of a protocol's body mapping; subclasses override what differs.

    Every method may raise a `ModelserveError` (an `InvalidInputError` for a body that does not
    fit, `UnsupportedMediaError` for a media type): the pipeline renders it with `error_body`.
    """

    # Observers and spans name requests by route template, never by raw path.
    name = "native"

    def check(self, call: PredictCall) -> None:
        """Refuse a request body media type this protocol does not read (415)."""

    def parse(self, call: PredictCall, codec: ServiceCodec) -> list[Any]:
        """The model inputs of the request body `call.body` (already under the size cap),
        validated against the version's input schema (`codec`)."""
        raise NotImplementedError

    def dump(
        self, call: PredictCall, codec: ServiceCodec, results: list[Any]
    ) -> tuple[bytes, Headers]:
        """A 200's body and extra headers for the engine's results, one per input in order
        (an output, or an `ItemRejectedError` for an input the model rejected). May set
        `call.media` when the body is not JSON."""
        raise NotImplementedError

    def error_body(self, code: str, message: str, details: Any, request_id: str | None) -> bytes:
        """An error's body in this protocol's shape (modelserve's by default)."""
        return error_body(code, message, details, request_id)
