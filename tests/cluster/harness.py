"""A multi-node modelserve on one machine, without containers (`make cluster`, docs/deploy.md).

Debian's nginx, running the shipped configuration (deploy/nginx) with only its addresses
rewritten, in front of two replicas (`modelserve serve --workers 2` each, their own data
folders), sharing one PostgreSQL database made for the run on the local server, one Redis
logical database and one artifact folder (what a shared volume or object store is in
production). `Cluster.start()` brings it all up; `Cluster.stop()` tears it down and drops the
database. Everything listens on 127.0.0.1 ports picked free at start.

Each replica runs in a process group of its own, so that "kill -9 the replica" kills its
supervisor and its workers at once, as a machine or a container dying would.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_NGINX = ROOT / "deploy" / "nginx"
SERVICES = Path(__file__).resolve().parent / "services.py"
REGISTRY_MODEL = Path(__file__).resolve().parent / "registry_model.py"
HOST = "127.0.0.1"

POSTGRES_ADMIN_URL = os.environ.get(
    "MODELSERVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# A logical database of its own (tests/conftest.py uses 13), flushed at start and at the end.
REDIS_DB = int(os.environ.get("MODELSERVE_CLUSTER_REDIS_DB", "11"))

REPLICAS = 2
WORKERS_PER_REPLICA = 2
# Seconds a replica may take to finish in-flight requests after SIGTERM (--graceful-timeout).
GRACEFUL_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 90.0
# The per-model limit the rate-limit scenario checks across both replicas.
LIMITED_MODEL = "limited"
LIMIT_PER_MINUTE = 60


def nginx_binary() -> str | None:
    """Debian's nginx, wherever PATH or /usr/sbin has it."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------- nginx


UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+\S+:\d+(\s+[^;]*)?;\s*$", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen\s+80;\s*$", re.MULTILINE)


def render_site(source: str, backends: list[tuple[int, bool]], listen_port: int) -> str:
    """deploy/nginx/modelserve.conf with its upstream servers and port replaced.

    `backends` are (port, down) pairs; each keeps the parameters (max_fails, fail_timeout) of
    the shipped file's first server line, so the rehearsal runs the shipped health checks.
    """
    servers = UPSTREAM_SERVER.findall(source)
    if not servers:
        raise ValueError("no `server host:port ...;` line in the upstream block")
    indent, params = servers[0]
    lines = [
        f"{indent}server {HOST}:{port}{params}{' down' if down else ''};" for port, down in backends
    ]
    first = True

    def replace(match: re.Match[str]) -> str:
        nonlocal first
        if first:
            first = False
            return "\n".join(lines)
        return ""

    site = UPSTREAM_SERVER.sub(replace, source)
    site, listens = LISTEN.subn(rf"\g<1>listen {HOST}:{listen_port};", site)
    if listens != 1:
        raise ValueError(f"expected one `listen 80;` line, found {listens}")
    return site


def main_config(run_dir: Path) -> str:
    """nginx.conf around the shipped site: what /etc/nginx/nginx.conf is in a container."""
    tmp = run_dir / "tmp"
    user = ""
    if os.geteuid() == 0:
        # A master started as root drops its workers to `nobody`, which must then be able to
        # write request bodies to the temporary folders.
        user = "user nobody nogroup;"
    return f"""\
{user}
daemon off;
worker_processes 2;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log notice;
events {{ worker_connections 2048; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include conf.d/modelserve.conf;
}}
"""


def lay_out_nginx(
    run_dir: Path, backends: list[tuple[int, bool]], listen_port: int, *, extra: str = ""
) -> Path:
    """Write nginx.conf, conf.d/ and modelserve/ under `run_dir` as /etc/nginx has them."""
    (run_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chmod(run_dir, 0o755)
        os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
    shutil.copytree(DEPLOY_NGINX / "modelserve", run_dir / "modelserve", dirs_exist_ok=True)
    source = (DEPLOY_NGINX / "modelserve.conf").read_text()
    site = render_site(source, backends, listen_port)
    # The shipped site logs where the official image collects it; here, into the run folder.
    site, logs = re.subn(r"/var/log/nginx/access\.log", f"{run_dir}/access.log", site + extra)
    if logs < 1:
        raise ValueError("the site has no `access_log /var/log/nginx/access.log` line")
    (run_dir / "conf.d" / "modelserve.conf").write_text(site)
    conf = run_dir / "nginx.conf"
    conf.write_text(main_config(run_dir))
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a laid-out configuration (prefix = its folder)."""
    binary = nginx_binary()
    assert binary is not None
    return subprocess.run(
        [binary, "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@dataclass
class Nginx:
    """One nginx master (foreground, our child) and how to reconfigure it."""

    run_dir: Path
    port: int
    backends: list[int]
    proc: subprocess.Popen[bytes] | None = None
    down: set[int] = field(default_factory=set)

    @property
    def conf(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def write(self) -> None:
        lay_out_nginx(self.run_dir, [(p, p in self.down) for p in self.backends], self.port)

    def start(self) -> None:
        self.write()
        checked = nginx_test(self.conf)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        binary = nginx_binary()
        assert binary is not None
        # The child keeps its own copy of the descriptor: ours is closed at once.
        with (self.run_dir / "nginx.out").open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-p", str(self.run_dir), "-c", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: _answers(HOST, self.port), 15, "nginx to listen")

    def workers(self) -> set[int]:
        assert self.proc is not None
        return {p.pid for p in psutil.Process(self.proc.pid).children()}

    def reload(self, timeout_s: float = 30.0) -> float:
        """Apply the current `down` set: SIGHUP, then wait until every old worker has exited
        (each finishes its requests in flight and closes its upstream connections). Returns
        the seconds that took."""
        assert self.proc is not None
        self.write()
        checked = nginx_test(self.conf)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        old = self.workers()
        started = time.monotonic()
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not (old & self.workers()), timeout_s, "old nginx workers to exit")
        return time.monotonic() - started

    def set_down(self, port: int, down: bool) -> float:
        """Take a replica out of the upstream (or put it back) and reload."""
        if down:
            self.down.add(port)
        else:
            self.down.discard(port)
        return self.reload()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def access_log(self) -> list[dict[str, Any]]:
        """Every line of the access log so far (deploy/nginx's modelserve_json format)."""
        path = self.run_dir / "access.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------- replicas


@dataclass
class Replica:
    """One `modelserve serve --workers 2`, as one machine of the cluster would run it."""

    index: int
    port: int
    data_dir: Path
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.starts}.log"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelserve",
            "serve",
            str(SERVICES),
            "--registry",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(WORKERS_PER_REPLICA),
            "--graceful-timeout",
            str(GRACEFUL_TIMEOUT_S),
        ]

    def start(self) -> float:
        """Start and wait until /readyz is 200 on every worker; returns the seconds taken."""
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        self.wait_ready()
        return time.monotonic() - started

    def wait_ready(self) -> None:
        # Each new connection lands on one worker (the kernel's choice): several 200s in a
        # row on fresh connections make it very likely that both have loaded.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        streak = 0
        while streak < 6:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.index} not ready:\n{self.log_tail()}")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"replica {self.index} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
                    ok = client.get("/readyz").status_code == 200
            except httpx.HTTPError:
                ok = False
            streak = streak + 1 if ok else 0
            if not ok:
                time.sleep(0.1)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def terminate(self) -> float:
        """SIGTERM, as a rolling restart does; returns the seconds until it exited."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(GRACEFUL_TIMEOUT_S + 10)
        finally:
            self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the whole replica: its supervisor and every worker."""
        if self.proc is None:
            return
        group = [self.proc.pid]
        with contextlib.suppress(psutil.Error):
            group += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        # Returns once every process of the replica is gone (its workers are reaped by
        # whoever inherits them, so a zombie counts as gone).
        wait_for(lambda: not any(_running(pid) for pid in group), 10, "the replica to die")


# -------------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """nginx, two replicas, their database, Redis database and artifact store."""

    run_dir: Path
    database: str
    jwt_secret: str
    nginx: Nginx
    replicas: list[Replica]
    admin_key: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database

    @property
    def redis_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

    @classmethod
    def create(cls, run_dir: Path | None = None) -> Cluster:
        run_dir = run_dir or Path(tempfile.mkdtemp(prefix="modelserve-cluster-"))
        database = f"modelserve_cluster_{uuid.uuid4().hex[:10]}"
        ports = [free_port() for _ in range(REPLICAS)]
        nginx = Nginx(run_dir / "nginx", free_port(), ports)
        nginx.run_dir.mkdir(parents=True, exist_ok=True)
        cluster = cls(
            run_dir=run_dir,
            database=database,
            # Equal on every replica (docs/deploy.md): a token signed by one is checked by all.
            jwt_secret=secrets.token_urlsafe(48),
            nginx=nginx,
            replicas=[],
        )
        cluster.env = cluster.server_env()
        cluster.replicas = [
            Replica(i, port, run_dir / f"replica-{i}", cluster.env)
            for i, port in enumerate(ports, start=1)
        ]
        return cluster

    def server_env(self) -> dict[str, str]:
        """The environment every replica gets: only the per-run values differ from prod."""
        env = {
            k: v
            for k, v in os.environ.items()
            # Nothing of the test session's own settings (tests/conftest.py turns auth off).
            if not k.startswith(("MODELSERVE_", "_MODELSERVE_", "PROMETHEUS_MULTIPROC"))
        }
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "MODELSERVE_MODE": "prod",
                "MODELSERVE_AUTH__ENABLED": "true",
                "MODELSERVE_AUTH__JWT_SECRET": self.jwt_secret,
                "MODELSERVE_DATABASE_URL": self.database_url,
                "MODELSERVE_REDIS_URL": self.redis_url,
                # One artifact store for all replicas: a version pushed through one is loaded
                # by the other.
                "MODELSERVE_REGISTRY__ARTIFACT_DIR": str(self.run_dir / "artifacts"),
                # nginx's address: its X-Forwarded-For is believed, nobody else's.
                "MODELSERVE_AUTH__TRUSTED_PROXIES": json.dumps([HOST]),
                "MODELSERVE_AUTH__MODEL_RATE_LIMITS": json.dumps(
                    {LIMITED_MODEL: f"{LIMIT_PER_MINUTE}/minute"}
                ),
                # The admin is made once here; prod mode never bootstraps one.
                "MODELSERVE_AUTH__ARGON2_MEMORY_KIB": "8192",
                "MODELSERVE_OBSERVABILITY__LOG_FORMAT": "json",
            }
        )
        return env

    # -- lifecycle

    def start(self) -> Cluster:
        try:
            self._create_database()
            self._flush_redis()
            self._cli("db", "upgrade")
            self._make_admin()
            for replica in self.replicas:
                replica.start()
            self.nginx.start()
            self.wait_through_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, keep: bool = False) -> None:
        """Stop everything this cluster started and drop its database and Redis keys."""
        self.nginx.stop()
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                with contextlib.suppress(Exception):
                    replica.terminate()
            replica.kill()
        with contextlib.suppress(Exception):
            self._drop_database()
        with contextlib.suppress(Exception):
            self._flush_redis()
        if not keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _admin_conninfo(self) -> str:
        return POSTGRES_ADMIN_URL

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self._admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def _drop_database(self) -> None:
        import psycopg

        with psycopg.connect(self._admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()

    def _cli(self, *args: str, stdin: str | None = None, **extra: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "modelserve", *args],
            env={**self.env, **extra},
            input=stdin,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"modelserve {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def cli_through_nginx(self, *args: str) -> str:
        """A client command (`modelserve models ...`) sent through nginx with the admin key."""
        return self._cli(
            *args, MODELSERVE_URL=self.nginx.base_url, MODELSERVE_API_KEY=self.admin_key
        )

    def _make_admin(self) -> None:
        password = secrets.token_urlsafe(24)
        self._cli(
            "users", "create-admin", "--username", "admin", "--password-stdin", stdin=password
        )
        self.admin_key = self._cli(
            "keys", "create", "--owner", "admin", "--name", "cluster", "--scope", "admin"
        ).strip()

    def wait_through_nginx(self) -> None:
        with httpx.Client(base_url=self.nginx.base_url, timeout=5.0) as client:
            wait_for(
                lambda: client.get("/readyz").status_code == 200, 30, "nginx to reach a replica"
            )

    # -- helpers for scenarios

    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_key}"}

    def create_key(self, name: str, scopes: list[str]) -> tuple[str, str]:
        """A new API key of the admin, made through nginx: (id, key)."""
        with httpx.Client(base_url=self.nginx.base_url, timeout=10.0) as client:
            response = client.post(
                "/v1/keys",
                headers=self.admin_headers(),
                json={"name": name, "scopes": scopes},
            )
        response.raise_for_status()
        body = response.json()
        return str(body["id"]), str(body["key"])

    def replica_by_address(self, address: str) -> Replica | None:
        return next((r for r in self.replicas if r.address == address), None)

    def describe(self) -> str:
        lines = [
            f"nginx      {self.nginx.base_url}  (config {self.nginx.conf})",
            *(
                f"replica-{r.index}  {r.base_url}  (--workers {WORKERS_PER_REPLICA},"
                f" log {r.log_path})"
                for r in self.replicas
            ),
            f"PostgreSQL {self.database_url}",
            f"Redis      {self.redis_url}",
            f"artifacts  {self.run_dir / 'artifacts'}",
            f"admin key  {self.admin_key}",
        ]
        return "\n".join(lines)


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A started cluster, always torn down (its files kept with MODELSERVE_CLUSTER_KEEP=1)."""
    cluster = Cluster.create()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(keep=os.environ.get("MODELSERVE_CLUSTER_KEEP") == "1")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    """Poll `check()` every 50 ms until it is true; RuntimeError naming `what` past timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
