"""`modelserve jobs ...` against a real `modelserve serve` with auth on and its dev key."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from modelserve.cli.main import app
from tests.e2e.server import ServerProcess, launch

pytestmark = pytest.mark.e2e

SERVICES = Path(__file__).with_name("services.py")
runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    folder = tmp_path_factory.mktemp("jobs-cli")
    env = {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "64",
        "MODELSERVE_AUTH__ARGON2_TIME_COST": "1",
        "MODELSERVE_DATA_DIR": str(folder / "data"),
        "MODELSERVE_JOBS__CHUNK_SIZE": "25",
        "MODELSERVE_JOBS__POLL_INTERVAL_S": "0.05",
        # Parts of 4 KiB: the CLI's uploads below take several.
        "MODELSERVE_JOBS__MAX_PART_BYTES": "4096",
    }
    with launch(folder, target=SERVICES, env=env) as running:
        credentials = json.loads((folder / "data" / "dev-credentials.json").read_text())
        yield running, credentials["api_key"]


def cli(server: tuple[ServerProcess, str], *args: str) -> tuple[int, str, str]:
    running, key = server
    result = runner.invoke(app, ["jobs", *args, "--url", running.base_url, "--api-key", key])
    return result.exit_code, result.stdout, result.stderr


def test_submit_wait_results_errors(server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    rows = [{"x": i, "label": "p" * 50} for i in range(200)] + [{"x": -1, "label": ""}]
    source = tmp_path / "points.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    code, out, err = cli(
        server, "submit", "doubler", str(source), "--wait", "--output-format", "csv"
    )
    assert code == 0, err
    assert "201 rows" in out
    assert "succeeded; 200 rows done, 1 failed" in out
    assert "uploading points.jsonl" in err  # progress bars go to stderr
    job_id = out.split()[1].rstrip(":")

    code, out, err = cli(server, "results", job_id)
    assert code == 0, err
    records = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["row"]) for r in records] == list(range(200))
    assert all(float(r["y"]) == 2 * int(r["row"]) for r in records)
    saved = tmp_path / "out.jsonl"
    code, _, err = cli(server, "results", job_id, "--format", "jsonl", "--output", str(saved))
    assert code == 0, err
    assert len(saved.read_bytes().splitlines()) == 200

    code, out, _ = cli(server, "errors", job_id)
    assert "200" in out
    assert "negative" in out
    code, out, _ = cli(server, "show", job_id)
    assert json.loads(out)["state"] == "succeeded"
    code, out, _ = cli(server, "list", "--state", "succeeded", "--json")
    assert [job["id"] for job in json.loads(out)["data"]] == [job_id]
    code, out, _ = cli(server, "list")
    assert "succeeded" in out
    code, _, err = cli(server, "cancel", job_id)
    assert code == 1
    assert "409 conflict" in err


def test_usage_errors_exit_2(server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    unknown = tmp_path / "rows.txt"
    unknown.write_text("{}\n")
    code, _, err = cli(server, "submit", "doubler", str(unknown))
    assert code == 2
    assert "--format" in err
    code, _, err = cli(server, "submit", "doubler", str(tmp_path / "missing.jsonl"))
    assert code == 2
    code, _, err = cli(server, "submit", "doubler", str(unknown), "--format", "xml")
    assert code == 2


def test_a_model_that_is_not_served_is_refused(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    source = tmp_path / "one.csv"
    source.write_text("x\n1\n")
    code, _, err = cli(server, "submit", "nope", str(source))
    assert code == 1
    assert "404 model_not_found" in err


def test_a_part_whose_answer_was_lost_is_not_sent_twice() -> None:
    import httpx

    from modelserve.cli.jobs import _put_part

    stored = bytearray()
    calls: list[str] = []

    def server_side(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json={"size": len(stored)})
        offset = int(request.url.params["offset"])
        if offset != len(stored):
            return httpx.Response(409, json={"error": {"details": {"size": len(stored)}}})
        stored.extend(request.content)
        if len(calls) == 1:  # the part arrived, but the connection broke before the answer
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, json={"size": len(stored)})

    with httpx.Client(base_url="http://jobs", transport=httpx.MockTransport(server_side)) as client:
        assert _put_part(client, "a" * 32, 0, b"first part", None) == 10
        assert _put_part(client, "a" * 32, 10, b"+second", None) == 17
    assert bytes(stored) == b"first part+second"
    assert calls == ["PUT", "GET", "PUT"]


def test_schedules_create_list_pause_resume_delete(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    source = tmp_path / "daily.jsonl"
    source.write_bytes(b'{"x": 1}\n{"x": 2}\n')
    code, out, err = cli(
        server, "schedules", "create", "nightly", "doubler", str(source), "--cron", "30 2 * * *"
    )
    assert code == 0, err
    assert "(nightly): active, next " in out and "T02:30:00Z" in out
    schedule_id = out.split()[1]
    code, out, err = cli(server, "schedules", "list")
    assert code == 0, err
    assert "nightly" in out and "30 2 * * *" in out
    code, out, err = cli(server, "schedules", "list", "--json")
    assert [s["id"] for s in json.loads(out)["data"]] == [schedule_id]
    code, out, _ = cli(server, "schedules", "pause", schedule_id)
    assert "paused, next paused" in out
    code, out, _ = cli(server, "schedules", "resume", schedule_id)
    assert "active, next " in out
    code, out, err = cli(
        server, "schedules", "create", "bad", "doubler", str(source), "--cron", "x"
    )
    assert code == 1 and "invalid_input" in err + out
    code, out, _ = cli(server, "schedules", "delete", schedule_id)
    assert code == 0 and "deleted" in out
    code, _, err = cli(server, "schedules", "show", schedule_id)
    assert code == 1 and "not_found" in err
