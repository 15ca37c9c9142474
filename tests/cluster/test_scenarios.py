"""Scale-out scenarios on the cluster rehearsal (nginx + two `serve --workers 2` replicas,
PostgreSQL, Redis): docs/deploy.md, "Rehearsing on one machine", explains each design and
lists the figures.

The criteria are the issue's and the only timed assertions of the test suite outside the
fault and benchmark suites: each is recorded in the table first (figures.py), then asserted.
`make test` runs the rolling restart and the revocation; `make cluster` runs them all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import figures
from tests.cluster.harness import (
    LIMIT_PER_MINUTE,
    LIMITED_MODEL,
    REGISTRY_MODEL,
    ROOT,
    WORKERS_PER_REPLICA,
    Cluster,
    Replica,
    wait_for,
)
from tests.cluster.load import OpenLoop, Outcome, summary

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

RATE = 100.0
BODY = b'{"x": 1.5}'
# nginx logs $msec with millisecond precision.
LOG_CLOCK_S = 0.002


def predict_key(cluster: Cluster, name: str, scopes: list[str] | None = None) -> dict[str, str]:
    _, key = cluster.create_key(name, scopes or ["predict:*"])
    return {"authorization": f"Bearer {key}"}


def entries_by_id(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {e["request_id"]: e for e in cluster.nginx.access_log()}


def attempts(entry: dict[str, Any]) -> list[str]:
    """The replicas nginx tried for one request, in order ("a:1, b:2" on a retry)."""
    return [a.strip() for a in entry["upstream"].split(",") if a.strip()]


def start_wall(entry: dict[str, Any]) -> float:
    return float(entry["msec"]) - float(entry["request_time"])


def fmt_counts(outcomes: list[Outcome]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(summary(outcomes).items()))


# ------------------------------------------------------------------------ rolling restart


def test_rolling_restart_under_load_loses_no_request(cluster: Cluster) -> None:
    """Each replica in turn: out of nginx (`down`, reload, old nginx workers gone), SIGTERM,
    start again, ready, back in. POST predicts at 100/s through nginx the whole time."""
    headers = predict_key(cluster, "rolling")
    # No client keep-alive: the restart reloads nginx four times, and a reload closes idle
    # client connections under a request being written (docs/deploy.md): a loss between the
    # client and nginx, not the replicas' doing, which ingress-nginx avoids by not reloading.
    load = OpenLoop(
        cluster.nginx.base_url, "/v1/models/echo/predict", BODY, headers, RATE, keepalive=False
    )
    load.start()
    steps: list[str] = []
    try:
        time.sleep(1.0)
        for replica in cluster.replicas:
            drained = cluster.nginx.set_down(replica.port, True)
            stopped = replica.terminate()
            ready = replica.start()
            back = cluster.nginx.set_down(replica.port, False)
            steps.append(
                f"replica-{replica.index}: drained {drained:.2f} s, stopped {stopped:.2f} s,"
                f" ready {ready:.1f} s, back {back:.2f} s"
            )
        back_wall = time.time()
        time.sleep(2.0)
    finally:
        outcomes = load.stop()
    log = entries_by_id(cluster)
    failed = [o for o in outcomes if not o.ok]
    # Lost by the cluster: nginx received the request and answered anything but a replica's
    # 200. A request nginx never completed receiving (no entry, or 408: the client stalled) or
    # whose answer the client did not take (nginx logged 200, or 499) failed in the load
    # generator, which a machine loaded by other work can starve; counted apart, and bounded.
    lost = [o for o in failed if o.request_id in log and log[o.request_id]["status"] not in _CLIENT]
    client_side = [o for o in failed if o not in lost]
    duration = outcomes[-1].sent - outcomes[0].sent if outcomes else 0.0
    after = {a for e in log.values() if start_wall(e) >= back_wall for a in attempts(e)}
    both_back = {r.address for r in cluster.replicas} <= after
    figures.record(
        "rolling restart of both replicas",
        load=f"{len(outcomes)} POST predicts at {RATE:.0f}/s over {duration:.1f} s",
        figure=f"lost {len(lost)}; failed in the client {len(client_side)}"
        f" ({fmt_counts(outcomes)}); " + "; ".join(steps),
        criterion="0 lost by the cluster; client failures <= 2 %; both replicas serve after",
        passed=not lost and len(client_side) <= 0.02 * len(outcomes) and both_back,
    )
    assert outcomes, "the load sent nothing"
    assert not lost, [(o.error, log[o.request_id]) for o in lost[:5]]
    assert len(client_side) <= 0.02 * len(outcomes), [
        (o.error, log.get(o.request_id)) for o in client_side[:5]
    ]
    # Both replicas served again after the restart (the rehearsal really restarted them).
    assert both_back, after


# nginx statuses that mean the client, not the cluster, did not finish the exchange: 408 (the
# request did not arrive in time), 499 (the client closed first), 200 (answered, not read).
_CLIENT = {200, 408, 499}


# ------------------------------------------------------------------------------- kill -9


@pytest.mark.cluster_full
def test_kill_9_loses_at_most_in_flight_and_nginx_moves_on(cluster: Cluster) -> None:
    """SIGKILL to one replica's whole process group under 100 POSTs/s: only requests it held
    at that instant fail, and nginx stops trying it within 2 s (max_fails=1)."""
    headers = predict_key(cluster, "kill9")
    victim = cluster.replicas[0]
    load = OpenLoop(cluster.nginx.base_url, "/v1/models/echo/predict", BODY, headers, RATE)
    load.start()
    try:
        time.sleep(1.5)
        killed_at, killed_wall = time.monotonic(), time.time()
        victim.kill()
        # Dying takes a moment: until the last process of the group is gone the kernel still
        # accepts connections on its port, and a request written on one is lost with it.
        dead_at, dead_wall = time.monotonic(), time.time()
        time.sleep(3.0)  # < fail_timeout (5 s): no re-probe of the dead replica in the window
    finally:
        outcomes = load.stop()
    log = entries_by_id(cluster)
    lost = [o for o in outcomes if not o.ok]
    # Held by the cluster while the replica died: sent before it was gone, not answered before
    # the kill. An upper bound on what the killed replica held.
    in_flight = [o for o in outcomes if o.sent <= dead_at and o.done > killed_at]
    tried_after = [
        start_wall(e) - killed_wall
        for e in log.values()
        if victim.address in attempts(e) and start_wall(e) >= killed_wall - LOG_CLOCK_S
    ]
    stopped_after = max(tried_after, default=0.0)
    on_victim = [
        o
        for o in lost
        if o.request_id in log
        and attempts(log[o.request_id])[:1] == [victim.address]
        and start_wall(log[o.request_id]) <= dead_wall + LOG_CLOCK_S
    ]
    passed = len(lost) <= len(in_flight) and len(on_victim) == len(lost) and stopped_after <= 2.0
    figures.record(
        "kill -9 of one replica",
        load=f"{len(outcomes)} POST predicts at {RATE:.0f}/s",
        figure=f"lost {len(lost)} of {len(in_flight)} in flight ({fmt_counts(outcomes)});"
        f" the replica took {(dead_at - killed_at) * 1000:.0f} ms to die; last attempt on it"
        f" {stopped_after * 1000:.0f} ms after the kill",
        criterion="lost <= in flight, all on the killed replica; nginx stops within 2 s",
        passed=passed,
    )
    assert len(lost) <= len(in_flight)
    assert len(on_victim) == len(lost), "a request failed that the killed replica did not hold"
    assert stopped_after <= 2.0
    restore(cluster, victim, headers)


def restore(cluster: Cluster, replica: Replica, headers: dict[str, str]) -> None:
    """Start a killed replica again and wait until nginx sends it requests (after fail_timeout,
    its next probe succeeds)."""
    replica.start()
    with httpx.Client(base_url=cluster.nginx.base_url, timeout=5.0) as client:

        def served_by_replica() -> bool:
            response = client.post(
                "/v1/models/echo/predict",
                content=BODY,
                headers={**headers, "content-type": "application/json"},
            )
            rid = response.headers["x-request-id"]
            entry = entries_by_id(cluster).get(rid)
            return entry is not None and attempts(entry)[-1:] == [replica.address]

        wait_for(served_by_replica, 30, f"nginx to send to replica-{replica.index} again")


# --------------------------------------------------------------------------- rate limit


@pytest.mark.cluster_full
def test_rate_limit_is_exact_across_replicas(cluster: Cluster) -> None:
    """60/minute on `limited` for one key, 100 requests through nginx spread over both
    replicas (four processes): exactly 60 pass, the rest get 429 (Redis holds the window)."""
    headers = predict_key(cluster, "limited", [f"predict:{LIMITED_MODEL}"])
    statuses: list[int] = []
    ids: list[str] = []
    with httpx.Client(base_url=cluster.nginx.base_url, timeout=10.0) as client:
        for _ in range(100):
            response = client.post(
                f"/v1/models/{LIMITED_MODEL}/predict",
                content=BODY,
                headers={**headers, "content-type": "application/json"},
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                ids.append(response.headers["x-request-id"])
    log = entries_by_id(cluster)
    by_replica = {
        r.index: sum(1 for i in ids if attempts(log[i])[-1:] == [r.address])
        for r in cluster.replicas
    }
    accepted, limited = statuses.count(200), statuses.count(429)
    spread = ", ".join(f"replica-{i}: {n}" for i, n in by_replica.items())
    figures.record(
        f"rate limit {LIMIT_PER_MINUTE}/min across replicas",
        load="100 sequential POSTs through nginx, one key",
        figure=f"{accepted} accepted ({spread}), {limited} refused with 429",
        criterion=f"exactly {LIMIT_PER_MINUTE} accepted, the rest 429, both replicas used",
        passed=accepted == LIMIT_PER_MINUTE and limited == 100 - LIMIT_PER_MINUTE,
    )
    assert accepted == LIMIT_PER_MINUTE
    assert limited == 100 - LIMIT_PER_MINUTE
    assert all(n > 0 for n in by_replica.values()), by_replica


# ------------------------------------------------------------------------------ metrics


@pytest.mark.cluster_full
def test_metrics_of_each_replica_and_rules(cluster: Cluster, tmp_path: Path) -> None:
    """/metrics of each replica sums its workers; through nginx it is not exposed; the alert
    rules in deploy/observability pass `promtool check rules` and `promtool test rules` on
    series scraped from the live replicas.

    It runs before the promote scenario on purpose: after a promote, the retired version's
    live gauges stay exported (as NaN, see the test below it) in the workers' shared files."""
    scraped: dict[int, str] = {}
    pids: dict[int, int] = {}
    for replica in cluster.replicas:
        with httpx.Client(base_url=replica.base_url, timeout=10.0) as client:
            response = client.get("/metrics", headers=cluster.admin_headers())
        assert response.status_code == 200
        scraped[replica.index] = response.text
        pids[replica.index] = len(
            {
                line.split('pid="', 1)[1].split('"', 1)[0]
                for line in response.text.splitlines()
                if line.startswith("modelserve_process_resident_memory_bytes{")
            }
        )
        assert "modelserve_http_requests_total" in response.text
    with httpx.Client(base_url=cluster.nginx.base_url, timeout=10.0) as client:
        edge = client.get("/metrics", headers=cluster.admin_headers())
    promtool = promtool_binary()
    rules = ROOT / "deploy" / "observability" / "alerts.yml"
    checked = tested = "promtool not installed"
    if promtool is not None:
        checked = run_promtool(promtool, "check", "rules", str(rules))
        tested = run_promtool(promtool, "test", "rules", str(rule_test(tmp_path, rules, scraped)))
    passed = (
        all(n == WORKERS_PER_REPLICA for n in pids.values())
        and edge.status_code == 404
        and checked == tested == "ok"
    )
    figures.record(
        "metrics per replica, alert rules",
        load="one scrape of each replica (admin key), one through nginx",
        figure=f"processes summed per replica: {pids}; through nginx: {edge.status_code};"
        f" promtool check rules: {checked}; test rules on live series: {tested}",
        criterion="each replica's /metrics sums its workers; rules check and evaluate",
        passed=passed,
    )
    assert all(n == WORKERS_PER_REPLICA for n in pids.values()), pids
    assert edge.status_code == 404
    assert checked == "ok", checked
    assert tested == "ok", tested


def promtool_binary() -> str | None:
    """promtool from PATH, or from Debian's package unpacked into .venv-deploy by the Makefile."""
    local = ROOT / ".venv-deploy" / "bin" / "promtool"
    return shutil.which("promtool") or (str(local) if local.exists() else None)


def run_promtool(promtool: str, *args: str) -> str:
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )
    return "ok" if result.returncode == 0 else (result.stdout + result.stderr)[-2000:]


def rule_test(tmp_path: Path, rules: Path, scraped: dict[int, str]) -> Path:
    """A promtool unit test: every series scraped from the replicas held for 30 minutes, plus
    `up`. A healthy cluster at rest fires no alert; the same series with one replica's `up` at
    0 fire exactly ModelserveDown for it. Both evaluate every rule of the file on real names
    and labels."""
    series: list[dict[str, str]] = []
    for index, text in scraped.items():
        instance = f"replica-{index}"
        for name, labels, value in parse_exposition(text):
            labels = {**labels, "instance": instance, "job": "modelserve"}
            series.append({"series": selector(name, labels), "values": f"{value}x30"})
    up = [
        {
            "series": selector("up", {"instance": f"replica-{i}", "job": "modelserve"}),
            "values": "1x30",
        }
        for i in scraped
    ]
    down = [dict(s) for s in up]
    down[0]["values"] = "0x30"
    fired = {
        "exp_labels": {"severity": "critical", "instance": "replica-1", "job": "modelserve"},
        "exp_annotations": {"summary": "modelserve target replica-1 is not answering scrapes"},
    }
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series + up,
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": name, "exp_alerts": []}
                    for name in alert_names(rules)
                ],
            },
            {
                "interval": "1m",
                "input_series": series + down,
                "alert_rule_test": [
                    {
                        "eval_time": "25m",
                        "alertname": "ModelserveDown",
                        "exp_alerts": [fired],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(test))  # JSON is YAML
    return path


def alert_names(rules: Path) -> list[str]:
    import yaml

    document = yaml.safe_load(rules.read_text())
    return [r["alert"] for g in document["groups"] for r in g["rules"] if "alert" in r]


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], str]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = sample.value
            if value != value or value in (float("inf"), float("-inf")):
                continue  # NaN/Inf samples (none expected) cannot be written as expanding values
            samples.append((sample.name, dict(sample.labels), repr(float(value))))
    return samples


def selector(name: str, labels: dict[str, str]) -> str:
    body = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{name}{{{body}}}"


# ------------------------------------------------------------------------------ promote


@pytest.mark.cluster_full
def test_promote_reaches_both_replicas_within_2_s(cluster: Cluster, tmp_path: Path) -> None:
    """Push two versions through nginx (uploads included), serve 1, then move `production` to
    2 through nginx: every worker of both replicas answers with 2 within 2 s."""
    service = f"{REGISTRY_MODEL}:Scaler"
    for version, factor in (("1", "2"), ("2", "3")):
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        (folder / "factor.txt").write_text(factor)
        cluster.cli_through_nginx("models", "push", "scaler", str(folder), "--service", service)
    cluster.cli_through_nginx("models", "promote", "scaler", "1")
    for replica in cluster.replicas:
        wait_for(lambda r=replica: versions_seen(cluster, r, 8) == {"1"}, 15, "version 1")

    with httpx.Client(base_url=cluster.nginx.base_url, timeout=30.0) as client:
        promoted_at = time.monotonic()
        response = client.put(
            "/v1/registry/models/scaler/aliases/production",
            headers=cluster.admin_headers(),
            json={"version": "2"},
        )
        answered = time.monotonic() - promoted_at
    assert response.status_code == 200, response.text
    reached = {r.index: last_old_answer(cluster, r, promoted_at) for r in cluster.replicas}
    worst = max(reached.values())
    figures.record(
        "promote through the registry",
        load=f"polling each replica on fresh connections ({WORKERS_PER_REPLICA} workers each)",
        figure=f"promote answered in {answered * 1000:.0f} ms; "
        + ", ".join(f"replica-{i}: {s * 1000:.0f} ms" for i, s in reached.items()),
        criterion="every worker of both replicas serves the new version within 2 s",
        passed=worst <= 2.0,
    )
    assert worst <= 2.0


@pytest.mark.cluster_full
def test_retired_version_leaves_no_unready_series(cluster: Cluster) -> None:
    """After the promote above, no replica exports the retired version 1 as not ready."""
    stale = []
    for replica in cluster.replicas:
        with httpx.Client(base_url=replica.base_url, timeout=10.0) as client:
            text = client.get("/metrics", headers=cluster.admin_headers()).text
        stale += [
            (replica.index, labels)
            for name, labels, value in parse_exposition(text)
            if name == "modelserve_model_ready"
            and labels.get("model") == "scaler"
            and labels.get("version") == "1"
            and float(value) == 0.0
        ]
    assert not stale, stale


def versions_seen(cluster: Cluster, replica: Replica, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        # A fresh connection each time: the kernel hands it to either worker.
        with httpx.Client(base_url=replica.base_url, timeout=5.0) as client:
            response = client.post(
                "/v1/models/scaler/predict",
                content=b'{"x": 1}',
                headers={**cluster.admin_headers(), "content-type": "application/json"},
            )
        seen.add(response.headers.get("x-model-version", f"status {response.status_code}"))
    return seen


def last_old_answer(cluster: Cluster, replica: Replica, since: float) -> float:
    """Poll one replica for 3 s; the seconds after `since` of the last answer not from v2."""
    last = 0.0
    while time.monotonic() - since < 3.0:
        with httpx.Client(base_url=replica.base_url, timeout=5.0) as client:
            response = client.post(
                "/v1/models/scaler/predict",
                content=b'{"x": 1}',
                headers={**cluster.admin_headers(), "content-type": "application/json"},
            )
        if response.headers.get("x-model-version") != "2":
            last = time.monotonic() - since
        time.sleep(0.02)
    return last


# ---------------------------------------------------------------------------- revocation


def test_revoked_key_refused_on_other_replica_within_ttl(cluster: Cluster) -> None:
    """Revoke a key through replica 1; replica 2 (both workers had it cached) refuses it within
    auth.credential_cache_ttl_s (1 s), plus the time of one database lookup (0.25 s allowed)."""
    ttl = 1.0
    key_id, key = cluster.create_key("revoked", ["predict:*"])
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    first, second = cluster.replicas
    for replica in (first, second):
        for _ in range(8):  # fresh connections: every worker caches the key
            with httpx.Client(base_url=replica.base_url, timeout=5.0) as client:
                assert (
                    client.post(
                        "/v1/models/echo/predict", content=BODY, headers=headers
                    ).status_code
                    == 200
                )
    with httpx.Client(base_url=first.base_url, timeout=10.0) as client:
        response = client.delete(f"/v1/keys/{key_id}", headers=cluster.admin_headers())
    revoked_at = time.monotonic()
    assert response.status_code == 204, response.text
    polls: list[tuple[float, int]] = []
    while time.monotonic() - revoked_at < ttl + 1.0:
        sent = time.monotonic() - revoked_at
        with httpx.Client(base_url=second.base_url, timeout=5.0) as client:
            status = client.post(
                "/v1/models/echo/predict", content=BODY, headers=headers
            ).status_code
        polls.append((sent, status))
        time.sleep(0.02)
    accepted_after = [s for s, status in polls if status == 200]
    last_accepted = max(accepted_after, default=0.0)
    late = [s for s, status in polls if s >= ttl + 0.25 and status != 401]
    figures.record(
        "revoked key, other replica",
        load=f"{len(polls)} polls of replica-2 over {ttl + 1.0:.1f} s (fresh connections)",
        figure=f"last accepted {last_accepted * 1000:.0f} ms after the revocation"
        f" ({len(accepted_after)} accepted, then 401)",
        criterion=f"refused everywhere within credential_cache_ttl_s ({ttl:.0f} s) + 0.25 s",
        passed=not late and any(status == 401 for _, status in polls),
    )
    assert not late, late
    assert any(status == 401 for _, status in polls)
