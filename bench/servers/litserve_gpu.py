"""LitServe 0.2.19 serving the GPU workloads (W2G sentences, W3 images) with the same models.

Run by `bench/gpu.py` on the GPU machine, where LitServe comes from the wheels `bench/gpu.sh`
installs (the CPU run's peer venv is for the 2-core machine). The settings are LitServe's
recommended fast setup for a GPU box: several inference workers per device, several API server
processes, `fast_queue=True` (ZeroMQ), batching with a short timeout. `--workers 2
--api-servers 4` is the configuration issue 3 measured as LitServe's best on an H100.

    python -m bench.servers.litserve_gpu --workload w2g --port 8001 --workers 2 --api-servers 4

BENCH_GPU_TINY=1 swaps in the tiny models and serves on the CPU (the wiring check).
"""

from __future__ import annotations

import argparse
import base64
import os

import litserve as ls

from bench.gpu_models import MiniLMShaped, ResNetPipeline, image_side
from bench.servers.common import UVICORN_SETTINGS
from bench.servers.litserve_app import MiniLMAPI

TINY = os.environ.get("BENCH_GPU_TINY") == "1"
SIDE = image_side(TINY)


class SentenceAPI(MiniLMAPI):
    """W2G: the CPU run's W2 API (decode, batch, unbatch, encode) over the MiniLM-shaped model."""

    def setup(self, device: str) -> None:
        self.model = MiniLMShaped(device, tiny=TINY)
        self.model.embed(["warm up"])


class ImageAPI(ls.LitAPI):
    """W3: the image base64-encoded in JSON (LitServe decodes JSON bodies), top-1 class out."""

    def setup(self, device: str) -> None:
        self.pipeline = ResNetPipeline(device, tiny=TINY)
        self.pipeline.predict([bytes(SIDE * SIDE * 3)])

    def decode_request(self, request):  # unannotated: LitServe then passes the JSON body
        raw: bytes = base64.b64decode(request["image_b64"])
        return raw

    def batch(self, inputs: list[bytes]) -> list[bytes]:
        return inputs

    def predict(self, images: list[bytes]) -> list[int]:
        return self.pipeline.predict(images)

    def unbatch(self, output: list[int]) -> list[int]:
        return output

    def encode_response(self, output: int):  # unannotated: no response model
        return {"label": output}


def main() -> None:
    """Serve one workload until SIGTERM."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workload", choices=["w2g", "w3"], required=True)
    p.add_argument("--workers", type=int, default=2, help="inference workers per device")
    p.add_argument("--api-servers", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    args = p.parse_args()
    cls = SentenceAPI if args.workload == "w2g" else ImageAPI
    api = cls(max_batch_size=args.max_batch, batch_timeout=args.batch_timeout)
    server = ls.LitServer(
        api,
        accelerator="cpu" if TINY else "cuda",
        devices=1,
        workers_per_device=args.workers,
        fast_queue=True,
    )
    server.run(
        host=args.host,
        port=args.port,
        num_api_servers=args.api_servers,
        log_level="warning",
        generate_client_file=False,
        http=UVICORN_SETTINGS["http"],
        loop=UVICORN_SETTINGS["loop"],
        access_log=False,
    )


if __name__ == "__main__":
    main()
