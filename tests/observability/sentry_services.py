"""A server whose one model fails to load with credentials in its error (the Sentry e2e test)."""

from __future__ import annotations

from pydantic import BaseModel

from modelserve import Service

DB_PASSWORD = "pa55w0rd-for-sentry-test"
API_KEY = "ms_0123456789ab_" + "s" * 43
FAILURE = (
    f"could not open postgresql://svc:{DB_PASSWORD}@db:5432/weights "
    f"(sent Authorization: Bearer {API_KEY})"
)


class Number(BaseModel):
    x: float


class Leaky(Service[Number, Number]):
    """Its setup raises an error whose text carries two credentials."""

    name = "leaky"

    def setup(self, device: str) -> None:
        raise RuntimeError(FAILURE)

    def predict(self, batch: list[Number]) -> list[Number]:
        raise AssertionError("never loaded")
