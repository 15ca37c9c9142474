"""Bring the cluster rehearsal up and keep it up for a person to try: `python -m tests.cluster.up`.

Prints where everything listens and the admin key, then waits for Ctrl+C (or SIGTERM) and
tears everything down, the database included. docs/deploy.md, "Rehearsing on one machine".
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from tests.cluster.harness import running_cluster


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_cluster() as cluster:
        print(cluster.describe(), flush=True)
        print(
            f"\ntry: curl -s {cluster.nginx.base_url}/v1/models/echo/predict"
            f" -H 'authorization: Bearer {cluster.admin_key}'"
            " -H 'content-type: application/json' -d '{\"x\": 21}'",
            flush=True,
        )
        print("\nCtrl+C stops the cluster and drops its database.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
