"""modelserve's side of the benchmark: the W1 and W2 services, as a production user writes them.

Served by `modelserve serve bench/servers/modelserve_app.py:TinyService` (the harness does this),
or, where the CLI is missing, by `python -m bench.servers.modelserve_app`, which runs
`create_app` under the same uvicorn settings the CLI uses.

Production switches: request ids are always on. The harness starts the server with
`MODELSERVE_MODE=prod` plus whatever `--ms-env KEY=VALUE` adds; that is the hook for metrics and
API-key auth once modelserve has them (add their variables to `PRODUCTION_ENV` in
`bench/targets.py`, and pass the key to the load driver with `--header`).
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel, Field

from bench.models import W2_DIM, MiniLM, TinyLinear
from modelserve import Service, batching


class Features(BaseModel):
    """W1 input: four measurements."""

    x: list[float] = Field(min_length=4, max_length=4)


class Score(BaseModel):
    """W1 output."""

    y: float


class TinyService(Service[Features, Score]):
    """W1: a fixed linear model, 4 floats -> 1 float."""

    name = "tiny"
    # No wait: batching a microsecond model only pays off when requests already queue up.
    batching = batching(max_batch_size=64, max_wait_ms=0)
    # A microsecond model: predict on the event loop, no thread hand-over per batch (the
    # documented choice for such models; docs/performance.md measures both).
    isolation = "inline"

    def setup(self, device: str) -> None:
        self.model = TinyLinear()

    def predict(self, batch: list[Features]) -> list[Score]:
        return [Score(y=y) for y in self.model.predict([f.x for f in batch])]


class Sentence(BaseModel):
    """W2 input: one short sentence."""

    text: str = Field(min_length=1, max_length=2000)


class Embedding(BaseModel):
    """W2 output: a normalized 384-float vector."""

    embedding: list[float] = Field(min_length=W2_DIM, max_length=W2_DIM)


class MiniLMService(Service[Sentence, Embedding]):
    """W2: all-MiniLM-L6-v2 sentence embeddings."""

    name = "minilm"
    # MiniLM on 2 CPU cores peaks at batch 64-128; a 2 ms window lets concurrent callers share.
    batching = batching(max_batch_size=64, max_wait_ms=2)

    def setup(self, device: str) -> None:
        self.model = MiniLM(device)
        self.model.embed(["warm up"])

    def predict(self, batch: list[Sentence]) -> list[Embedding]:
        vectors = self.model.embed([s.text for s in batch])
        return [Embedding(embedding=row) for row in vectors.tolist()]


SERVICES: dict[str, type[Service[Any, Any]]] = {
    "TinyService": TinyService,
    "MiniLMService": MiniLMService,
}


def main() -> None:
    """Fallback when `modelserve serve` is unavailable: create_app under the CLI's settings."""
    from bench.servers.common import run_uvicorn
    from modelserve import Settings, create_app
    from modelserve.http.protocol import protocol_class

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", choices=sorted(SERVICES), default="TinyService")
    args = parser.parse_args()
    app = create_app(Settings(), services=[SERVICES[args.service]])
    run_uvicorn(app, args.host, args.port, http=protocol_class())


if __name__ == "__main__":
    main()
