"""The prediction log: sampling per model, batched writes, bounded queue, retention."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from modelserve.config import ObservabilityConfig
from modelserve.db import migrate
from modelserve.db.engine import Database
from modelserve.db.repos.predictions import list_predictions
from modelserve.observability.metrics import Metrics
from modelserve.observability.predlog import PredictionLog
from modelserve.types import Principal

PRINCIPAL = Principal(
    kind="api_key",
    subject="key-9",
    owner_id="u1",
    role="member",
    scopes=frozenset({"predict:*"}),
    rate_key="key-9",
)


def config(**fields: object) -> ObservabilityConfig:
    return ObservabilityConfig(**fields)  # type: ignore[arg-type]


def test_sampling_follows_the_per_model_rate() -> None:
    draws = iter([0.05, 0.5, 0.95])
    log = PredictionLog(
        config(predlog_sample_rate=0.1, predlog_sample_rates={"iris": 0.6, "off": 0.0}),
        draw=lambda: next(draws),
    )
    assert log.rate("other") == 0.1 and log.rate("iris") == 0.6 and log.rate("off") == 0.0
    assert log.wants("iris") is True  # 0.05 < 0.6
    assert log.wants("iris") is True  # 0.5 < 0.6
    assert log.wants("iris") is False  # 0.95
    assert log.wants("off") is False  # no draw needed
    assert PredictionLog(config(predlog_sample_rate=1.0), draw=lambda: 0.999).wants("x")


def test_rates_must_be_shares() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        config(predlog_sample_rates={"iris": 1.5})


def offer(log: PredictionLog, model: str, status: int = 200, **kwargs: object) -> None:
    fields: dict[str, object] = {
        "model": model,
        "version": "1",
        "request_id": uuid.uuid4().hex,
        "principal": PRINCIPAL,
        "status": status,
        "latency_s": 0.004,
        "body": b'{"x": [1.0, 2.0]}',
        "output": b'{"score": 3.0}',
    }
    fields.update(kwargs)
    log.offer(**fields)  # type: ignore[arg-type]


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    metrics = Metrics()
    log = PredictionLog(config(predlog_sample_rate=1.0, predlog_queue=2), metrics=metrics)
    for _ in range(5):
        offer(log, "iris")
    assert log.pending == 2 and log.dropped == 3
    metrics.flush()
    dropped = metrics.registry.get_sample_value(
        "modelserve_predlog_rows_total", {"outcome": "dropped"}
    )
    assert dropped == 3


@pytest.mark.services
async def test_rows_are_written_in_batches_and_purged_after_retention(database_url: str) -> None:
    migrate.upgrade(database_url)
    database = Database(database_url)
    model = f"m{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    clock = [now - dt.timedelta(days=10)]
    metrics = Metrics()
    log = PredictionLog(
        config(predlog_sample_rate=0.5, predlog_retention_days=7, predlog_max_bytes=100),
        metrics=metrics,
        now=lambda: clock[0],
    )
    try:
        log.start(database)
        offer(log, model)  # 10 days old: past retention
        clock[0] = now
        offer(log, model)
        offer(log, model, status=422, error_code="invalid_input")
        offer(log, model, body=b'{"x": [' + b"1.0," * 50 + b"1.0]}")  # over the byte cap
        await log.stop()
        assert log.pending == 0

        async with database.session() as session:
            rows = await list_predictions(
                session=session,
                model=model,
                since=now - dt.timedelta(days=30),
                until=now + dt.timedelta(seconds=1),
                limit=100,
            )
        assert len(rows) == 4
        ok = rows[1]
        assert (ok.status, ok.sample_rate, ok.latency_ms) == (200, 0.5, pytest.approx(4.0))
        assert ok.input_json == '{"x": [1.0, 2.0]}' and ok.output_json == '{"score": 3.0}'
        failed = rows[2]
        assert failed.status == 422 and failed.input_json is None and failed.output_json is None
        assert rows[3].input_json is None and rows[3].output_json == '{"score": 3.0}'
        metrics.flush()
        written = metrics.registry.get_sample_value(
            "modelserve_predlog_rows_total", {"outcome": "written"}
        )
        assert written == 4

        assert await log.purge() >= 1
        async with database.session() as session:
            left = await list_predictions(
                session=session,
                model=model,
                since=now - dt.timedelta(days=30),
                until=now + dt.timedelta(seconds=1),
                limit=100,
            )
        assert len(left) == 3 and all(r.created_at >= now - dt.timedelta(days=7) for r in left)
    finally:
        await database.dispose()


async def test_a_failing_database_drops_the_batch_without_raising() -> None:
    database = Database("sqlite:////nonexistent-dir/never/modelserve.db")
    log = PredictionLog(config(predlog_sample_rate=1.0))
    log._database = database
    offer(log, "iris")
    try:
        assert await log.flush() == 0
        assert log.dropped == 1 and log.pending == 0
    finally:
        await database.dispose()
