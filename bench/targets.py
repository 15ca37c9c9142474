"""The servers under test: how each is started, where it is called, and with what settings.

Each server runs its vendor's recommended fast setup for a 2-core machine with one load
generator on the same machine: one server process (plus the worker processes LitServe and
BentoML always add), uvloop + httptools where the server runs uvicorn, no access log.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.models import W1_INPUT, W2_SENTENCE
from bench.servers.common import UVICORN_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
MS_APP = ROOT / "bench" / "servers" / "modelserve_app.py"
EXAMPLE_EMBEDDINGS = ROOT / "examples" / "embeddings.py"

# What a production user switches on: production mode. Request ids and metrics are on by
# default; API-key auth is provisioned per run by bench/auth.py (`--no-auth` to compare).
PRODUCTION_ENV: dict[str, str] = {"MODELSERVE_MODE": "prod"}
DEFAULT_HEADERS: dict[str, str] = {"Content-Type": "application/json"}

JSON_BODIES: dict[str, bytes] = {
    "w1": json.dumps({"x": W1_INPUT}).encode(),
    "w2": json.dumps({"text": W2_SENTENCE}).encode(),
}

CommandFn = Callable[[str, int], list[str]]


@dataclass
class Server:
    """One server kind as the harness sees it."""

    name: str
    workloads: tuple[str, ...]
    command: CommandFn
    paths: dict[str, str]
    bodies: dict[str, bytes] = field(default_factory=lambda: dict(JSON_BODIES))
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Peer venv under bench/.peers, None for the project's own venv.
    peer: str | None = None
    version_of: str | None = None
    # modelserve: GET path of the model's stats, read before and after each load point.
    stats_paths: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # Items per request by workload (1 unless the body carries a batch).
    items: dict[str, int] = field(default_factory=dict)


def project_python() -> str:
    """The interpreter running the harness (the project venv)."""
    return sys.executable


def modelserve_cli_available() -> bool:
    """True once `python -m modelserve serve` exists."""
    try:
        return (
            importlib.util.find_spec("modelserve.__main__") is not None
            and importlib.util.find_spec("modelserve.cli.serve") is not None
        )
    except ImportError:
        return False


@dataclass(frozen=True)
class MsW2:
    """Which modelserve service serves W2: examples/embeddings.py when it fits, else ours."""

    target: str
    name: str
    body: bytes
    source: str
    batching: str = "max 64, wait 2 ms"


def modelserve_w2() -> MsW2:
    """Prefer the project's own embeddings example; fall back to the bench service."""
    ours = MsW2(f"{MS_APP}:MiniLMService", "minilm", JSON_BODIES["w2"], "bench service")
    if not EXAMPLE_EMBEDDINGS.is_file():
        return ours
    try:
        from modelserve import load_target

        specs = load_target(str(EXAMPLE_EMBEDDINGS))
    except Exception:
        return ours
    for spec in specs:
        schema = spec.input_schema()
        required = schema.get("required", [])
        props = schema.get("properties", {})
        if len(required) == 1 and props.get(required[0], {}).get("type") == "string":
            body = json.dumps({required[0]: W2_SENTENCE}).encode()
            target = f"{EXAMPLE_EMBEDDINGS}:{spec.cls.__name__}"
            b = spec.batching
            policy = f"max {b.max_batch_size}, wait {b.max_wait_ms:g} ms"
            return MsW2(target, spec.name, body, "examples/embeddings.py", policy)
    return ours


def _modelserve(ms_w2: MsW2 | None) -> Server:
    cli = modelserve_cli_available()
    w2 = ms_w2 or MsW2(f"{MS_APP}:MiniLMService", "minilm", JSON_BODIES["w2"], "bench service")
    targets = {"w1": f"{MS_APP}:TinyService", "w2": w2.target}
    fallback_service = {"w1": "TinyService", "w2": "MiniLMService"}
    names = {"w1": "tiny", "w2": w2.name}

    def command(workload: str, port: int) -> list[str]:
        if cli:
            return [
                project_python(),
                "-m",
                "modelserve",
                "serve",
                targets[workload],
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        return [
            project_python(),
            "-m",
            "bench.servers.modelserve_app",
            "--port",
            str(port),
            "--service",
            fallback_service[workload],
        ]

    launch = "modelserve serve (CLI)" if cli else "create_app under uvicorn (CLI not present)"
    return Server(
        name="modelserve",
        workloads=("w1", "w2"),
        command=command,
        paths={w: f"/v1/models/{n}/predict" for w, n in names.items()},
        bodies={"w1": JSON_BODIES["w1"], "w2": w2.body},
        settings={
            "w1": {
                "launch": launch,
                "workers": 1,
                "batching": "max 64, wait 0 ms",
                **_uv(),
                "protocol": MS_PROTOCOL,
            },
            "w2": {
                "launch": launch,
                "service": w2.source,
                "workers": 1,
                "batching": w2.batching,
                **_uv(),
                "protocol": MS_PROTOCOL,
            },
        },
        version_of="modelserve",
        stats_paths={w: f"/v1/models/{n}" for w, n in names.items()},
        env=dict(PRODUCTION_ENV),
    )


MS_PROTOCOL = "modelserve's (one-input predict without an ASGI task)"


def _uv() -> dict[str, Any]:
    return {
        "server": "uvicorn",
        "http": UVICORN_SETTINGS["http"],
        "loop": UVICORN_SETTINGS["loop"],
        "access_log": False,
    }


def _module_server(module: str) -> CommandFn:
    def command(workload: str, port: int) -> list[str]:
        return [project_python(), "-m", module, "--workload", workload, "--port", str(port)]

    return command


def _peer_command(peer: str, module: str) -> CommandFn:
    def command(workload: str, port: int) -> list[str]:
        python = str(ROOT / "bench" / ".peers" / peer / "bin" / "python")
        return [python, "-m", module, "--workload", workload, "--port", str(port)]

    return command


def all_servers(ms_w2: MsW2 | None = None) -> dict[str, Server]:
    """Every server kind, by name, in report order."""
    return {
        "raw-asgi": Server(
            name="raw-asgi",
            workloads=("w1",),
            command=lambda workload, port: [
                project_python(),
                "-m",
                "bench.servers.raw_asgi",
                "--port",
                str(port),
            ],
            paths={"w1": "/echo"},
            settings={
                "w1": {
                    "app": "echo, no framework",
                    "workers": 1,
                    **_uv(),
                    "protocol": "modelserve's (ASGI path)",
                }
            },
            version_of="uvicorn",
        ),
        "modelserve": _modelserve(ms_w2),
        "fastapi": Server(
            name="fastapi",
            workloads=("w1", "w2"),
            command=_module_server("bench.servers.fastapi_app"),
            paths={"w1": "/predict", "w2": "/predict"},
            settings={
                w: {"endpoint": "sync def + pydantic models", "workers": 1, **_uv()}
                for w in ("w1", "w2")
            },
            version_of="fastapi",
        ),
        "litserve": Server(
            name="litserve",
            workloads=("w1", "w2"),
            command=_peer_command("litserve", "bench.servers.litserve_app"),
            paths={"w1": "/predict", "w2": "/predict"},
            settings={
                "w1": {
                    "workers_per_device": 1,
                    "num_api_servers": 1,
                    "fast_queue": True,
                    "max_batch_size": 1,
                },
                "w2": {
                    "workers_per_device": 1,
                    "num_api_servers": 1,
                    "fast_queue": True,
                    "max_batch_size": 64,
                    "batch_timeout_s": 0.005,
                },
            },
            peer="litserve",
            version_of="litserve",
        ),
        "bentoml": Server(
            name="bentoml",
            workloads=("w1", "w2"),
            command=_peer_command("bentoml", "bench.servers.bentoml_app"),
            paths={"w1": "/predict", "w2": "/predict"},
            bodies={"w1": JSON_BODIES["w1"], "w2": json.dumps({"texts": [W2_SENTENCE]}).encode()},
            settings={
                "w1": {"workers": 1, "batchable": False},
                "w2": {
                    "workers": 1,
                    "batchable": True,
                    "max_batch_size": 64,
                    "max_latency_ms": 10_000,
                },
            },
            peer="bentoml",
            version_of="bentoml",
        ),
    }
