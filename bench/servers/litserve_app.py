"""LitServe 0.2.19 serving the same models; runs in its own venv (bench/.peers/litserve).

Its recommended fast setup for a small CPU box: one inference worker, one API server process,
`fast_queue=True` (ZeroMQ between the API server and the worker, which LitServe advises above
~100 requests/s), batching only where the model gains from it (W2).
"""

from __future__ import annotations

import litserve as ls

from bench.models import MiniLM, TinyLinear
from bench.servers.common import UVICORN_SETTINGS, port_args

W2_MAX_BATCH = 64
W2_BATCH_TIMEOUT_S = 0.005


class TinyAPI(ls.LitAPI):
    """W1: one request per predict call."""

    def setup(self, device: str) -> None:
        self.model = TinyLinear()

    def decode_request(self, request):  # unannotated: LitServe then passes the JSON body
        x: list[float] = request["x"]
        return x

    def predict(self, x: list[float]) -> float:
        return self.model.predict([x])[0]

    def encode_response(self, output: float):  # unannotated: no response model
        return {"y": output}


class MiniLMAPI(ls.LitAPI):
    """W2: LitServe batches decoded requests into one predict call."""

    def setup(self, device: str) -> None:
        self.model = MiniLM("cpu")
        self.model.embed(["warm up"])

    def decode_request(self, request):  # unannotated: LitServe then passes the JSON body
        text: str = request["text"]
        return text

    def batch(self, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.model.embed(texts).tolist()
        return vectors

    def unbatch(self, output: list[list[float]]) -> list[list[float]]:
        return output

    def encode_response(self, output: list[float]):  # unannotated: no response model
        return {"embedding": output}


def main() -> None:
    """`python -m bench.servers.litserve_app --workload w1 --port P`."""
    args = port_args(__doc__ or "")
    api: ls.LitAPI
    if args.workload == "w1":
        api = TinyAPI(max_batch_size=1)
    else:
        api = MiniLMAPI(max_batch_size=W2_MAX_BATCH, batch_timeout=W2_BATCH_TIMEOUT_S)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, fast_queue=True)
    server.run(
        host=args.host,
        port=args.port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
        http=UVICORN_SETTINGS["http"],
        loop=UVICORN_SETTINGS["loop"],
        access_log=False,
    )


if __name__ == "__main__":
    main()
