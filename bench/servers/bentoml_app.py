"""BentoML 1.4.40 serving the same models; runs in its own venv (bench/.peers/bentoml).

`python -m bench.servers.bentoml_app --workload w1 --port P` execs `bentoml serve` on the
workload's service class, so the harness's process group holds BentoML's whole process tree.
Its recommended setup for a small CPU box: one worker, adaptive batching only where the model
gains from it (W2, a batchable API taking a list of sentences).
"""

from __future__ import annotations

import os
import sys

import bentoml
import numpy as np

from bench.models import MiniLM, TinyLinear
from bench.servers.common import port_args

W2_MAX_BATCH = 64
W2_MAX_LATENCY_MS = 10_000


@bentoml.service(workers=1, traffic={"timeout": 30})
class TinyService:
    """W1: one request per call."""

    def __init__(self) -> None:
        self.model = TinyLinear()

    @bentoml.api
    def predict(self, x: list[float]) -> dict[str, float]:
        return {"y": self.model.predict([x])[0]}


@bentoml.service(workers=1, traffic={"timeout": 30})
class MiniLMService:
    """W2: requests' sentence lists are merged by BentoML's adaptive batcher."""

    def __init__(self) -> None:
        self.model = MiniLM("cpu")
        self.model.embed(["warm up"])

    @bentoml.api(batchable=True, max_batch_size=W2_MAX_BATCH, max_latency_ms=W2_MAX_LATENCY_MS)
    def predict(self, texts: list[str]) -> np.ndarray:
        return self.model.embed(texts)


SERVICES = {"w1": "TinyService", "w2": "MiniLMService"}


def main() -> None:
    """Replace this process with `bentoml serve` for the workload's service."""
    args = port_args(__doc__ or "")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        f"bench.servers.bentoml_app:{SERVICES[args.workload]}",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
