"""Load drivers: wrk (the real one) and a bounded pure-Python fallback.

Both keep `concurrency` keep-alive connections busy for `duration_s` (closed loop: each
connection sends its next request when the last answer arrived) and return a `LoadResult`.

wrk is driven with a generated Lua script: the body is read from a file (so binary bodies
work), a `response` hook counts non-2xx and 503 answers per thread, and `done` prints one
`BENCH_JSON {...}` line with the percentiles. `--latency` is passed too, and its text
distribution is parsed when the Lua line is missing.

The fallback speaks HTTP/1.1 over asyncio streams (no client library in the hot loop, so it can
drive a few thousand requests per second per process); `procs > 1` spreads it over processes.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_SAMPLES_PER_PROC = 200_000


@dataclass
class LoadResult:
    """What one load run measured, client side."""

    driver: str
    concurrency: int
    duration_s: float
    requests: int
    ok: int
    non_2xx: int
    shed_503: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def req_per_s(self) -> float:
        """Completed requests (any status) per second."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus the derived rates."""
        data = asdict(self)
        data["req_per_s"] = self.req_per_s
        data["ok_per_s"] = self.ok_per_s
        return data


def wrk_path() -> str | None:
    """wrk on PATH, or None."""
    return shutil.which("wrk")


# -- wrk ------------------------------------------------------------------------------------

_LUA = """
local f = assert(io.open(%(body_path)s, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
%(headers)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) shed = 0; non2xx = 0 end
function response(status, headers, body)
  if status == 503 then shed = shed + 1 end
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local s, n = 0, 0
  for _, t in ipairs(threads) do s = s + t:get("shed"); n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"timeout":%%d,"status":%%d,"shed":%%d,"non2xx":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    s, n, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return '"' + "".join(f"\\{b}" for b in text.encode()) + '"'


def wrk_script(body_path: Path, headers: dict[str, str]) -> str:
    """The Lua script that posts the body in `body_path` with `headers`."""
    lines = [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    return _LUA % {"body_path": _lua_string(str(body_path)), "headers": "\n".join(lines)}


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration_s: float,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Run wrk once; raises RuntimeError when it fails or prints nothing usable."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(body_path, headers))
        cmd = [
            exe,
            f"-t{max(1, min(threads, concurrency))}",
            f"-c{concurrency}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return parse_wrk(proc.stdout, concurrency)


def parse_wrk(stdout: str, concurrency: int) -> LoadResult:
    """Read our Lua line, else wrk's own text (`--latency` distribution)."""
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON ") :])
            non_2xx = int(d["non2xx"])
            return LoadResult(
                driver="wrk",
                concurrency=concurrency,
                duration_s=d["duration_us"] / 1e6,
                requests=int(d["requests"]),
                ok=int(d["requests"]) - non_2xx,
                non_2xx=non_2xx,
                shed_503=int(d["shed"]),
                socket_errors={k: int(d[k]) for k in ("connect", "read", "write", "timeout")},
                latency_ms={
                    "p50": d["p50_us"] / 1000,
                    "p90": d["p90_us"] / 1000,
                    "p99": d["p99_us"] / 1000,
                    "max": d["max_us"] / 1000,
                    "mean": d["mean_us"] / 1000,
                },
            )
    return parse_wrk_text(stdout, concurrency)


_DURATION_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _DURATION_UNITS[unit]


def parse_wrk_text(stdout: str, concurrency: int) -> LoadResult:
    """Parse wrk's plain `--latency` output (no 503 count there: shed is reported as 0)."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", stdout)
    if done is None:
        raise RuntimeError(f"cannot parse wrk output: {stdout[-500:]!r}")
    requests = int(done.group(1))
    duration_s = _to_ms(done.group(2), done.group(3)) / 1000
    latency = {
        f"p{pct}": _to_ms(value, unit)
        for pct, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)", stdout, re.M)
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    non_2xx = int(bad.group(1)) if bad else 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout
    )
    names = ("connect", "read", "write", "timeout")
    errors = {n: int(sock.group(i + 1)) if sock else 0 for i, n in enumerate(names)}
    return LoadResult(
        driver="wrk",
        concurrency=concurrency,
        duration_s=duration_s,
        requests=requests,
        ok=requests - non_2xx,
        non_2xx=non_2xx,
        shed_503=0,
        socket_errors=errors,
        latency_ms=latency,
    )


# -- pure-Python fallback -------------------------------------------------------------------


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    non_2xx: int = 0
    shed: int = 0
    errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; (status, server wants the connection closed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    close = b"connection: close" in lower
    match = re.search(rb"content-length:\s*(\d+)", lower)
    if match is not None:
        await reader.readexactly(int(match.group(1)))
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        close = True
    return status, close


async def _connection(
    host: str, port: int, request: bytes, stop_at: float, timeout_s: float, tally: _Tally
) -> None:
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while loop.time() < stop_at:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), timeout_s
                )
            except (OSError, TimeoutError):
                tally.errors["connect"] += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        started = time.perf_counter()
        try:
            writer.write(request)
            status, close = await asyncio.wait_for(_read_response(reader), timeout_s)
        except TimeoutError:
            tally.errors["timeout"] += 1
            close, status = True, 0
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors["read"] += 1
            close, status = True, 0
        else:
            tally.requests += 1
            if len(tally.latencies) < MAX_SAMPLES_PER_PROC:
                tally.latencies.append((time.perf_counter() - started) * 1000)
            if not 200 <= status < 300:
                tally.non_2xx += 1
            if status == 503:
                tally.shed += 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _build_request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _python_worker(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    duration_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    host, port, request = _build_request(url, body, headers)
    tally = _Tally()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        stop_at = start + duration_s
        await asyncio.gather(
            *(
                _connection(host, port, request, stop_at, timeout_s, tally)
                for _ in range(concurrency)
            )
        )
        return loop.time() - start

    try:
        import uvloop

        elapsed = uvloop.run(main())
    except ImportError:
        elapsed = asyncio.run(main())
    return {
        "elapsed": elapsed,
        "latencies": tally.latencies,
        "requests": tally.requests,
        "non_2xx": tally.non_2xx,
        "shed": tally.shed,
        "errors": tally.errors,
    }


def run_python(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float = 10.0,
    procs: int = 1,
) -> LoadResult:
    """The fallback driver; `procs` processes share `concurrency` connections."""
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    jobs = [(url, body, headers, n, duration_s, timeout_s) for n in shares]
    if procs == 1:
        parts = [_python_worker(*jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            parts = pool.starmap(_python_worker, jobs)
    latencies = sorted(x for p in parts for x in p["latencies"])
    requests = sum(p["requests"] for p in parts)
    non_2xx = sum(p["non_2xx"] for p in parts)
    errors = {k: sum(p["errors"][k] for p in parts) for k in parts[0]["errors"]}
    return LoadResult(
        driver="python" if procs == 1 else f"python x{procs}",
        concurrency=concurrency,
        duration_s=max(p["elapsed"] for p in parts),
        requests=requests,
        ok=requests - non_2xx,
        non_2xx=non_2xx,
        shed_503=sum(p["shed"] for p in parts),
        socket_errors=errors,
        latency_ms=summarize(latencies),
    )


def summarize(sorted_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of sorted latencies in ms (empty dict when there are none)."""
    if not sorted_ms:
        return {}

    def pct(p: float) -> float:
        return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]

    return {
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": sorted_ms[-1],
        "mean": sum(sorted_ms) / len(sorted_ms),
    }


def drive(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration_s: float,
    driver: str = "auto",
    threads: int = 1,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Run one load point with wrk when asked for or available ('auto'), else the fallback."""
    use_wrk = driver == "wrk" or (driver == "auto" and wrk_path() is not None)
    if use_wrk:
        return run_wrk(
            url,
            body,
            headers,
            concurrency=concurrency,
            duration_s=duration_s,
            threads=threads,
            timeout_s=timeout_s,
        )
    return run_python(
        url,
        body,
        headers,
        concurrency=concurrency,
        duration_s=duration_s,
        timeout_s=timeout_s,
        procs=threads if driver == "python" else 1,
    )
