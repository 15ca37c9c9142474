"""deploy/nginx: `nginx -t` passes (plain and TLS), and every limit marked "= server" equals
the server's own default, so nginx refuses exactly what a replica would.

`make cluster` runs the same files in front of real replicas (tests/cluster).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from modelserve.config import HttpConfig, RegistryConfig
from modelserve.observability import request_ids
from tests.cluster.harness import DEPLOY_NGINX, lay_out_nginx, nginx_binary, nginx_test

NGINX = DEPLOY_NGINX
SITE = (NGINX / "modelserve.conf").read_text()
LIMITS = (NGINX / "modelserve" / "limits.conf").read_text()
PROXY = (NGINX / "modelserve" / "proxy.conf").read_text()
LOCATIONS = (NGINX / "modelserve" / "locations.conf").read_text()
TLS = (NGINX / "modelserve-tls.conf").read_text()


def directive(text: str, name: str) -> list[str]:
    """The arguments of every `name ...;` line (comments ignored)."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(name + " ") and line.endswith(";"):
            found.append(line[len(name) : -1].strip())
    return found


def size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    if value[-1].lower() in units:
        return int(value[:-1]) * units[value[-1].lower()]
    return int(value)


def seconds(value: str) -> float:
    return float(value[:-1]) if value.endswith("s") else float(value)


def require_nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("MODELSERVE_REQUIRE_SERVICES") == "1":
            pytest.fail("nginx is not installed, and MODELSERVE_REQUIRE_SERVICES=1 requires it")
        pytest.skip("nginx is not installed (apt-get install nginx; `make deploy-check` does it)")
    return binary


def test_limits_equal_the_servers() -> None:
    http = HttpConfig()
    assert size(directive(LIMITS, "client_max_body_size")[0]) == http.max_body_bytes
    count, each = directive(LIMITS, "large_client_header_buffers")[0].split()
    assert size(each) == http.max_header_line_bytes
    assert int(count) * size(each) == http.max_header_bytes
    assert seconds(directive(LIMITS, "client_header_timeout")[0]) == http.header_timeout_s
    assert seconds(directive(LIMITS, "client_body_timeout")[0]) == http.body_timeout_s
    uploads = LOCATIONS.split("location = /v1/registry/uploads", 1)[1].split("}", 1)[0]
    assert size(directive(uploads, "client_max_body_size")[0]) == RegistryConfig().max_upload_bytes
    assert directive(uploads, "proxy_request_buffering") == ["off"]


def test_upstream_keepalive_closes_before_the_server_does() -> None:
    # Otherwise a request can be written on a connection the server is closing, and a POST
    # lost that way is never retried.
    upstream = SITE.split("upstream modelserve {", 1)[1].split("}", 1)[0]
    assert seconds(directive(upstream, "keepalive_timeout")[0]) < HttpConfig().keep_alive_timeout_s
    assert directive(PROXY, "proxy_http_version") == ["1.1"]
    assert directive(PROXY, "proxy_set_header Connection") == ['""']


def test_only_idempotent_requests_are_retried_after_sending() -> None:
    (conditions,) = directive(PROXY, "proxy_next_upstream")
    assert set(conditions.split()) == {"error", "timeout", "http_502", "http_503"}
    for line in (SITE + PROXY + LOCATIONS + TLS).splitlines():
        assert "non_idempotent" not in line.split("#", 1)[0]


def test_request_ids_nginx_passes_are_ones_the_server_keeps() -> None:
    (pattern,) = re.findall(r'"~(\^[^"]+\$)"\s+\$http_x_request_id;', SITE)
    assert pattern.encode() == request_ids._PLAIN.pattern
    assert directive(PROXY, "proxy_set_header X-Request-ID") == ["$modelserve_request_id"]


def test_streaming_routes_are_unbuffered() -> None:
    sse = LOCATIONS.split("location ~ ^/v1/(chat/)?completions$", 1)[1].split("}", 1)[0]
    assert directive(sse, "proxy_buffering") == ["off"]


def test_no_location_drops_the_proxy_headers() -> None:
    # A proxy_set_header inside a location replaces all the inherited ones.
    assert "proxy_set_header" not in "".join(
        line.split("#", 1)[0] for line in LOCATIONS.splitlines()
    )


def test_nginx_t_accepts_the_site(tmp_path: Path) -> None:
    require_nginx()
    conf = lay_out_nginx(tmp_path, [(8001, False), (8002, False)], 8080)
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr


def test_nginx_t_accepts_the_tls_example(tmp_path: Path) -> None:
    require_nginx()
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=modelserve.example.com",
            "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    site = TLS.replace("/etc/nginx/tls/", f"{tls}/").replace("listen 443 ssl;", "listen 8443 ssl;")
    assert f"{tls}/tls.crt" in site
    conf = lay_out_nginx(tmp_path, [(8001, False)], 8080, extra="\n" + site)
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr
