"""Plain FastAPI serving the same models, written the way its tutorial teaches.

Pydantic request and response models, a sync `def` endpoint (FastAPI runs it in its thread
pool, which keeps the event loop free while the model runs), one model call per request.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from bench.models import MiniLM, TinyLinear
from bench.servers.common import port_args, run_uvicorn


class Features(BaseModel):
    """W1 input."""

    x: list[float] = Field(min_length=4, max_length=4)


class Score(BaseModel):
    """W1 output."""

    y: float


class Sentence(BaseModel):
    """W2 input."""

    text: str = Field(min_length=1, max_length=2000)


class Embedding(BaseModel):
    """W2 output."""

    embedding: list[float]


def build(workload: str) -> FastAPI:
    """The app for one workload, model loaded at import as most tutorials do."""
    app = FastAPI()
    if workload == "w1":
        tiny = TinyLinear()

        @app.post("/predict")
        def predict_w1(features: Features) -> Score:
            return Score(y=tiny.predict([features.x])[0])

    else:
        minilm = MiniLM("cpu")
        minilm.embed(["warm up"])

        @app.post("/predict")
        def predict_w2(sentence: Sentence) -> Embedding:
            return Embedding(embedding=minilm.embed([sentence.text])[0].tolist())

    return app


def main() -> None:
    """`python -m bench.servers.fastapi_app --workload w1 --port P`."""
    args = port_args(__doc__ or "")
    app: Any = build(args.workload)
    run_uvicorn(app, args.host, args.port)


if __name__ == "__main__":
    main()
