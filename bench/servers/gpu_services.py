"""modelserve services of the GPU workloads (W3 images, W2G sentences); see bench/gpu_models.py.

Configured by environment, set by `bench/gpu.py`: BENCH_GPU_TINY=1 swaps in the tiny models,
BENCH_GPU_MAX_BATCH sets the largest batch (default 128 for W3, 256 for W2G), BENCH_GPU_REPLICAS
the model replicas per server process (default 2: one tokenizes or decodes on the CPU while the
other's batch runs on the GPU).

W3's body is the raw 150,528 bytes of the image (`Content-Type: application/octet-stream`): the
input model has one bytes field, so modelserve takes the body as that field (docs/api.md).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from bench.gpu_models import MiniLMShaped, ResNetPipeline, image_side
from modelserve import Service, batching

TINY = os.environ.get("BENCH_GPU_TINY") == "1"
SIDE = image_side(TINY)


def _max_batch(default: int) -> int:
    return int(os.environ.get("BENCH_GPU_MAX_BATCH", default))


REPLICAS = int(os.environ.get("BENCH_GPU_REPLICAS", "2"))


class Image(BaseModel):
    """W3 input: one raw HxWx3 uint8 image, sent as the application/octet-stream body."""

    image: bytes = Field(min_length=SIDE * SIDE * 3, max_length=SIDE * SIDE * 3)


class Label(BaseModel):
    """W3 output: top-1 class id."""

    label: int


class ImageService(Service[Image, Label]):
    """W3: ResNet-50 (random weights, fp16 on CUDA, CUDA graphs up to batch 16)."""

    name = "resnet"
    replicas = REPLICAS
    batching = batching(max_batch_size=_max_batch(128), max_wait_ms=2)

    def setup(self, device: str) -> None:
        self.pipeline = ResNetPipeline(device, tiny=TINY)
        self.pipeline.predict([bytes(SIDE * SIDE * 3)])

    def predict(self, batch: list[Image]) -> list[Label]:
        return [Label(label=y) for y in self.pipeline.predict([item.image for item in batch])]


class Sentence(BaseModel):
    """W2G input."""

    text: str = Field(min_length=1, max_length=2000)


class Embedding(BaseModel):
    """W2G output."""

    embedding: list[float]


class SentenceService(Service[Sentence, Embedding]):
    """W2G: MiniLM-shaped BERT (random weights, fp16 on CUDA)."""

    name = "minilm-gpu"
    replicas = REPLICAS
    batching = batching(max_batch_size=_max_batch(256), max_wait_ms=2)

    def setup(self, device: str) -> None:
        self.model = MiniLMShaped(device, tiny=TINY)
        self.model.embed(["warm up"])

    def predict(self, batch: list[Sentence]) -> list[Embedding]:
        vectors = self.model.embed([s.text for s in batch])
        return [Embedding(embedding=row) for row in vectors.tolist()]
