"""Batch jobs: a served model run over a whole uploaded data set, through the same validation,
versions and batching engine as its HTTP API, checkpointed per chunk.

    uploads.py      resumable uploads of inputs (parts in the artifact store)
    service.py      submit / list / show / cancel / retry, results and failed rows
    inputs.py       reading JSON lines, CSV and Parquet; cutting chunks
    rows.py         a row as the JSON body of a predict request (CSV cells typed)
    outputs.py      results per chunk; JSON lines, CSV and Parquet downloads
    work.py         the runner seam: `JobQueue`, `ChunkRunner` and their frozen payloads
    sql_queue.py    the queue in the database (leases with SKIP LOCKED / a lease column)
    processing.py   one chunk: validate, predict, write, ack (or retry, or fail)
    sharing.py      how much of a served model a job may take (slots, requests first, time)
    runner.py       the embedded runner of a server process
    outbox.py       Celery mode: the server publishes chunks that have no broker message yet
    delivery.py     Celery mode: what a worker does with one chunk's message
    celery_app.py   Celery mode: the Celery app, publisher and task (the one Celery import)
    schedules.py    scheduled jobs: create / list / show / pause / resume / delete
    scheduler.py    the loop that claims each due tick once and submits its job
    cron.py         cron expressions read in a schedule's time zone (cronsim)
    gateway.py      how jobs reach served models (`ModelGateway`)
    states.py       job and chunk states and their transitions

docs/jobs.md is the user's guide and says why it is built this way.
"""
