"""Services used by the in-process HTTP tests."""

from __future__ import annotations

import math
import threading
import time

from pydantic import BaseModel, Field

from modelserve import ItemError, Service, batching


class Vector(BaseModel):
    values: list[float] = Field(min_length=1, max_length=16)


class Summary(BaseModel):
    total: float
    count: int


class Summer(Service[Vector, Summary]):
    """Adds up a vector."""

    name = "summer"
    version = "3"
    batching = batching(max_batch_size=8, max_wait_ms=1)

    def predict(self, batch: list[Vector]) -> list[Summary | ItemError]:
        out: list[Summary | ItemError] = []
        for v in batch:
            if any(x < 0 for x in v.values):
                out.append(ItemError("negative values are not supported", code="negative"))
            else:
                out.append(Summary(total=sum(v.values), count=len(v.values)))
        return out


class Text(BaseModel):
    text: str = Field(max_length=64)


class Upper(Service[Text, Text]):
    name = "upper"

    async def predict(self, batch: list[Text]) -> list[Text]:  # type: ignore[override]
        return [Text(text=t.text.upper()) for t in batch]


class Wrong(Service[Text, Text]):
    name = "wrong"

    def predict(self, batch: list[Text]) -> list[Text]:
        return []


class Crash(Service[Text, Text]):
    name = "crash"

    def predict(self, batch: list[Text]) -> list[Text]:
        raise RuntimeError("/secret/path/model.bin is corrupt")


class Broken(Service[Text, Text]):
    name = "broken"

    def setup(self, device: str) -> None:
        raise OSError("weights missing")

    def predict(self, batch: list[Text]) -> list[Text]:
        return batch


class NotFinite(Service[Text, Summary]):
    name = "nonfinite"

    def predict(self, batch: list[Text]) -> list[Summary]:
        return [Summary(total=math.nan if t.text == "nan" else math.inf, count=0) for t in batch]


class Gate(Service[Text, Text]):
    """Blocks until released: lets tests hold work in flight."""

    name = "gate"
    batching = batching(max_batch_size=1, max_queue=2, timeout_s=0.5)
    release = threading.Event()

    def predict(self, batch: list[Text]) -> list[Text]:
        self.release.wait(5)
        time.sleep(0.01)
        return batch


class Blob(BaseModel):
    """One bytes field: the model also takes the raw bytes as an application/octet-stream body."""

    data: bytes = Field(min_length=1, max_length=1024)


class Digest(BaseModel):
    size: int
    sha256: str


class Checksum(Service[Blob, Digest]):
    """Hashes the bytes it is sent (an image or audio model's shape of input)."""

    name = "checksum"
    batching = batching(max_batch_size=8, max_wait_ms=1)

    def predict(self, batch: list[Blob]) -> list[Digest]:
        import hashlib

        return [Digest(size=len(b.data), sha256=hashlib.sha256(b.data).hexdigest()) for b in batch]
