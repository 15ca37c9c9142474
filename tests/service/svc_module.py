"""A module target for loader tests."""

from pydantic import BaseModel

from modelserve import Service


class In(BaseModel):
    text: str


class Echo(Service[In, In]):
    name = "echo"

    def predict(self, batch: list[In]) -> list[In]:
        return batch


NotAService = 42
