"""The image's HEALTHCHECK: /livez on the port the server was told to use (exit 0 = healthy).

Liveness, not readiness: a model still loading is healthy; /readyz is for load balancers.
The slim image has no curl, and Python is already there.
"""

import os
import sys
import urllib.request

port = os.environ.get("MODELSERVE_SERVER__PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
