"""The `modelserve` command: argument handling in-process, serving through real subprocesses."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelserve import __version__
from modelserve.cli.factory import PLAN_ENV_VAR, ServePlan, absolute_targets, build_app
from modelserve.cli.main import app
from modelserve.cli.serve import watch_dirs
from modelserve.errors import ConfigError

HERE = Path(__file__).parent
SERVICES = HERE / "services.py"
REPO = HERE.parent.parent
READY_TIMEOUT_S = 30.0

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_server(tmp_path: Path, *args: str) -> Iterator[Server]:
    """`python -m modelserve serve services.py ARGS` on a free port, ready, stopped after."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelserve",
                "serve",
                str(SERVICES),
                "--port",
                str(port),
                *args,
            ],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready within {READY_TIMEOUT_S}s:\n{server.output()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


# -- arguments and settings (no server) ----------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"modelserve {__version__}"


BROKEN_TARGETS = {
    "missing_file": (None, "no such file"),
    "no_service": ("X = 1\n", "defines no Service subclass"),
    "bad_name": (
        "from pydantic import BaseModel\n"
        "from modelserve import Service\n"
        "class M(BaseModel):\n    x: int\n"
        "class Bad(Service[M, M]):\n    name = 'Not A Name'\n"
        "    def predict(self, batch):\n        return batch\n",
        "Bad.name must match",
    ),
    "raises_on_import": ("raise RuntimeError('boom at import')\n", "boom at import"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TARGETS))
def test_broken_target_exits_2_with_one_line_and_no_traceback(tmp_path: Path, case: str) -> None:
    source, expected = BROKEN_TARGETS[case]
    target = tmp_path / f"{case}.py"
    if source is not None:
        target.write_text(source)
    result = runner.invoke(app, ["serve", str(target), "--port", str(free_port())])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modelserve: error:")
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_unknown_module_target_exits_2() -> None:
    result = runner.invoke(app, ["serve", "no_such_package_xyz.models"])
    assert result.exit_code == 2
    assert "cannot import module 'no_such_package_xyz.models'" in result.stderr


def test_missing_class_in_target_exits_2() -> None:
    result = runner.invoke(app, ["serve", f"{SERVICES}:Nope"])
    assert result.exit_code == 2
    assert "has no attribute 'Nope'" in result.stderr


def test_same_service_twice_exits_2() -> None:
    result = runner.invoke(app, ["serve", str(SERVICES), f"{SERVICES}:Echo"])
    assert result.exit_code == 2
    assert "two services are named 'echo'" in result.stderr


def test_invalid_setting_exits_2_naming_it() -> None:
    result = runner.invoke(app, ["serve", str(SERVICES), "--workers", "0"])
    assert result.exit_code == 2
    assert "server.workers" in result.stderr


def test_invalid_environment_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_SERVER__PORT", "not-a-port")
    result = runner.invoke(app, ["serve", str(SERVICES)])
    assert result.exit_code == 2
    assert "server.port" in result.stderr


def test_reload_and_workers_cannot_be_combined() -> None:
    result = runner.invoke(app, ["serve", str(SERVICES), "--reload", "--workers", "2"])
    assert result.exit_code == 2
    assert result.stderr == (
        "modelserve: error: --reload runs one server process; drop --workers or --reload\n"
    )


def test_flags_override_environment_which_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELSERVE_SERVER__HOST", "0.0.0.0")
    monkeypatch.setenv("MODELSERVE_SERVER__PORT", "9001")
    monkeypatch.setenv("MODELSERVE_HTTP__MAX_BODY_BYTES", "2048")
    plan = ServePlan(targets=(), overrides={"server": {"port": 9002}, "device": "cuda:1"})
    settings = plan.settings()
    assert settings.server.host == "0.0.0.0"  # from the environment
    assert settings.server.port == 9002  # the flag wins
    assert settings.http.max_body_bytes == 2048  # untouched by an unrelated flag
    assert settings.device == "cuda:1"
    assert settings.server.workers == 1  # default


def test_plan_round_trips_through_json() -> None:
    plan = ServePlan(targets=("a.py", "pkg.mod:Cls"), overrides={"server": {"port": 1}})
    assert ServePlan.from_json(plan.to_json()) == plan


def test_file_targets_become_absolute_and_modules_stay(tmp_path: Path) -> None:
    assert absolute_targets(["tests/cli/services.py:Echo", "pkg.mod:Cls"]) == (
        f"{Path('tests/cli/services.py').resolve()}:Echo",
        "pkg.mod:Cls",
    )


def test_factory_builds_the_app_from_the_published_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = ServePlan(targets=(f"{SERVICES}:Echo",), overrides={"http": {"max_body_bytes": 512}})
    monkeypatch.setenv(PLAN_ENV_VAR, plan.to_json())
    built = build_app()
    assert [d.spec.name for d in built.state.runtime] == ["echo"]
    assert built.state.settings.http.max_body_bytes == 512


def test_factory_without_a_plan_says_how_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLAN_ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match="modelserve serve"):
        build_app()


def test_reload_watches_the_folders_of_the_targets() -> None:
    specs = ServePlan(targets=(str(SERVICES),)).specs()
    assert watch_dirs(specs) == [str(HERE.resolve())]


# -- client commands against a real server ---------------------------------------------------------


def test_predict_prints_the_answer(server: Server) -> None:
    result = runner.invoke(app, ["predict", "echo", '{"text": "héllo"}', "--url", server.url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"text": "héllo", "pid": server.proc.pid}


def test_predict_reads_a_file_and_stdin(server: Server, tmp_path: Path) -> None:
    body = tmp_path / "input.json"
    body.write_text('{"text": "from file"}')
    from_file = runner.invoke(app, ["predict", "echo", f"@{body}", "--url", server.url])
    assert json.loads(from_file.stdout)["text"] == "from file"
    from_stdin = runner.invoke(
        app, ["predict", "echo", "-", "--url", server.url], input='{"text": "from stdin"}'
    )
    assert json.loads(from_stdin.stdout)["text"] == "from stdin"


def test_predict_batch_wraps_a_list(server: Server) -> None:
    result = runner.invoke(
        app, ["predict", "echo", '[{"text": "a"}, {"text": "b"}]', "--batch", "--url", server.url]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert [o["text"] for o in answer["outputs"]] == ["a", "b"]
    assert answer["errors"] == []


def test_predict_error_prints_code_and_message_and_exits_1(server: Server) -> None:
    result = runner.invoke(app, ["predict", "echo", '{"txt": 1}', "--url", server.url])
    assert result.exit_code == 1
    assert "HTTP 422 invalid_input: request body does not match" in result.stderr
    assert "at text: Field required" in result.stderr
    assert result.stdout == ""


def test_predict_unknown_model_exits_1(server: Server) -> None:
    result = runner.invoke(app, ["predict", "nope", "{}", "--url", server.url])
    assert result.exit_code == 1
    assert "HTTP 404 model_not_found" in result.stderr


def test_predict_invalid_json_exits_2_without_sending() -> None:
    result = runner.invoke(app, ["predict", "echo", "{not json", "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "input is not valid JSON" in result.stderr


def test_predict_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", "echo", f"@{tmp_path / 'missing.json'}"])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_models_lists_a_table(server: Server) -> None:
    result = runner.invoke(app, ["models", "--url", server.url])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert rows["NAME"][:4] == ["NAME", "VERSION", "STATUS", "BATCHING"]
    assert rows["echo"][1:4] == ["3", "ready", "off"]
    assert rows["slow"][1:3] == ["1", "ready"]
    assert "up to 20 / 2000 ms" in result.stdout


def test_models_json_prints_the_raw_answer(server: Server) -> None:
    result = runner.invoke(app, ["models", "--json", "--url", server.url])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [m["name"] for m in data["data"]] == ["echo", "slow"]


def test_connection_refused_exits_1_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["models", "--url", url])
    assert result.exit_code == 1
    assert f"cannot connect to {url}" in result.stderr
    assert "Traceback" not in result.output


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self._reply(200, b'{"data": [], "count": 0}')

    def do_POST(self) -> None:
        self.seen.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self._reply(502, b"upstream went away", content_type="text/plain")

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_RecordingHandler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_api_key_is_sent_as_bearer_token(
    recording_server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = recording_server
    assert runner.invoke(app, ["models", "--url", url, "--api-key", "k-flag"]).exit_code == 0
    monkeypatch.setenv("MODELSERVE_API_KEY", "k-env")
    assert runner.invoke(app, ["models", "--url", url]).exit_code == 0
    assert [h.get("authorization") for h in seen] == ["Bearer k-flag", "Bearer k-env"]


def test_error_without_json_body_shows_status_and_text(
    recording_server: tuple[str, list[dict[str, str]]],
) -> None:
    url, _ = recording_server
    result = runner.invoke(app, ["predict", "echo", "{}", "--url", url])
    assert result.exit_code == 1
    assert "HTTP 502: upstream went away" in result.stderr


# -- process behaviour ---------------------------------------------------------------------------


def test_workers_serve_from_separate_processes(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2") as running:
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            # A new connection each time: the kernel hands accepts to whichever worker is free.
            with httpx.Client(base_url=running.url, timeout=10) as client:
                response = client.post("/v1/models/echo/predict", json={"text": "w"})
            if response.status_code == 200:
                pids.add(response.json()["pid"])
        assert len(pids) == 2, running.output()
        assert running.proc.pid not in pids  # the parent only supervises


def _stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(url + "/v1/models/slow", timeout=5).json()["stats"]
    return stats


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(tmp_path: Path) -> None:
    graceful_s = 10.0
    with running_server(tmp_path, "--graceful-timeout", str(graceful_s)) as running:
        results: dict[int, Any] = {}

        def call(i: int) -> None:
            try:
                response = httpx.post(
                    running.url + "/v1/models/slow/predict", json={"value": i}, timeout=30
                )
                results[i] = (response.status_code, response.json())
            except httpx.HTTPError as exc:
                results[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        # The service batches up to 20 and sleeps 1 s: wait until every request is in that call.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = _stats(running.url)
            if stats["running_batches"] == 1 and stats["queue_depth"] == 0:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"requests never reached the model: {stats}")

        running.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)  # uvicorn notices the signal on its next 0.1 s tick
        try:
            late = httpx.get(running.url + "/readyz", timeout=5).status_code
        except httpx.TransportError:
            late = None  # refused: the listening socket is closed
        assert late in (None, 503)

        for thread in threads:
            thread.join(timeout=30)
        assert results == {i: (200, {"value": i * 2}) for i in range(20)}
        code = running.proc.wait(timeout=graceful_s + 10)
        assert code == 0, running.output()
        assert time.monotonic() - signalled < graceful_s + 2
        assert "draining in-flight requests" in running.output()


def test_module_entry_point_matches_the_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"modelserve {__version__}"
