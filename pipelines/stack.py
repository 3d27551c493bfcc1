"""`beast stack`: a shared tracking stack on localhost, PostgreSQL + MLflow tracking server + Prefect server.

Why: the default SQLite stores are single-writer files; a team (or parallel Optuna workers) needs one
PostgreSQL with a database each for MLflow, Prefect and Optuna, and servers that clients reach over HTTP.

Everything lives under `stack.state` (default `.stack/`): `postgres/` (data dir), `socket/` (unix socket),
`logs/<component>.log`, `<component>.pid`, `mlartifacts/` (MLflow artifacts, served through the tracking
server: `--serve-artifacts --artifacts-destination`, so clients upload over HTTP and need no file access),
`prefect/` (PREFECT_HOME). PostgreSQL refuses to run as root: as root, initdb / pg_ctl run as the
`postgres` OS user (`runuser`) and the data, socket and log paths are chowned to it.

Authentication: scram-sha-256 on the socket and on TCP (initdb `--auth=scram-sha-256 --pwfile`), never trust.
The superuser's password is a secret generated once (`secrets.token_urlsafe`) into `<state>/postgres.secret`
(mode 0600, owned by whoever runs `up`; as root, initdb reads a temporary copy owned by `postgres`, deleted
right after). The servers get it inside their database URLs through their environment, never their command
line (`ps` shows any user every command line, but a process's environment only to its owner). Clients get it
through libpq's password file `<state>/pgpass` (0600, rewritten by every `up`): `beast stack env` exports
`PGPASSFILE`, so every URL shown or printed stays password-free. A stack created before this (no secret next
to an existing data dir: trust auth) is refused by `up` with what to do.
The MLflow and Prefect servers each run in their own session, so `down` ends every process they spawned.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from core.config import Port, Positive
from core.errors import BeastError

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
PG_OS_USER = "postgres"
STOP_WAIT_S = 15.0
LOG_TAIL = 20
SECRET_FILE = "postgres.secret"
PGPASS_FILE = "pgpass"
SECRET_BYTES = 32  # token_urlsafe: 43 characters of [A-Za-z0-9_-]


@dataclass(frozen=True)
class StackDatabases:
    """PostgreSQL database names, one per client."""

    mlflow: str = "mlflow"
    prefect: str = "prefect"
    optuna: str = "optuna"


@dataclass(frozen=True)
class StackParams:
    """params.yaml -> `stack`."""

    state: Path = Path(".stack")
    host: str = "127.0.0.1"
    postgres_port: Port = 5433
    mlflow_port: Port = 5000
    prefect_port: Port = 4200
    user: str = "beast"
    databases: StackDatabases = field(default_factory=StackDatabases)
    start_timeout_s: Positive = 120.0


@dataclass(frozen=True)
class StackUrls:
    """Where each client finds the stack."""

    postgres: str
    optuna_storage: str
    mlflow_backend: str
    mlflow_tracking: str
    prefect_api: str
    prefect_db: str
    pgpassfile: str  # libpq password file holding the secret: clients reach PostgreSQL with password-free URLs


@dataclass(frozen=True)
class Status:
    """One component's state, as `status` prints it."""

    name: str
    up: bool
    pid: int | None
    url: str


def urls(params: StackParams, secret: str | None = None) -> StackUrls:
    """The stack's URLs. Without `secret` (what is shown, printed and exported) no password is in them: libpq
    clients read it from `pgpassfile`. With it, the database URLs carry it (URL-quoted): only for the servers'
    environments."""
    user = params.user if secret is None else f"{params.user}:{urllib.parse.quote(secret, safe='')}"
    base = f"{user}@{params.host}:{params.postgres_port}"
    db = params.databases
    return StackUrls(
        postgres=f"postgresql://{base}",
        optuna_storage=f"postgresql+psycopg2://{base}/{db.optuna}",
        mlflow_backend=f"postgresql://{base}/{db.mlflow}",
        mlflow_tracking=f"http://{params.host}:{params.mlflow_port}",
        prefect_api=f"http://{params.host}:{params.prefect_port}/api",
        prefect_db=f"postgresql+asyncpg://{base}/{db.prefect}",
        pgpassfile=str(_state(params) / PGPASS_FILE),
    )


def exports(u: StackUrls) -> str:
    """Shell lines that point MLflow, Prefect and the Optuna CLI at the stack (`eval "$(beast stack env)"`);
    PGPASSFILE lets psycopg2 / libpq (Optuna, `psql`) log in without the secret in any URL."""
    return (
        f"export MLFLOW_TRACKING_URI={u.mlflow_tracking}\nexport PREFECT_API_URL={u.prefect_api}\n"
        f"export OPTUNA_STORAGE={u.optuna_storage}\nexport PGPASSFILE={u.pgpassfile}\n"
    )


# ---------------------------------------------------------------- paths, processes, probes


def _state(params: StackParams) -> Path:
    return params.state.resolve()


def _pid_file(params: StackParams, name: str) -> Path:
    return _state(params) / f"{name}.pid"


def _log(params: StackParams, name: str) -> Path:
    return _state(params) / "logs" / f"{name}.log"


def _pg_data(params: StackParams) -> Path:
    return _state(params) / "postgres"


# ---------------------------------------------------------------- the secret


def secret_path(params: StackParams) -> Path:
    return _state(params) / SECRET_FILE


def read_secret(params: StackParams) -> str | None:
    """The PostgreSQL superuser's password, None when the state has no secret (not created yet, or trust-era)."""
    try:
        return secret_path(params).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _trust_era(params: StackParams) -> bool:
    """A database cluster without a secret next to it was initialised with trust authentication."""
    return (_pg_data(params) / "PG_VERSION").exists() and read_secret(params) is None


def _trust_error(params: StackParams) -> BeastError:
    return BeastError(
        f"postgres: the stack in {params.state} was created with trust authentication (any local process could "
        f"connect as superuser) and has no {SECRET_FILE}: recreate it with password authentication: "
        f"`beast stack down && rm -rf {params.state}` then `beast stack up` (this deletes its MLflow runs, Prefect "
        "history and Optuna studies: pg_dump what you need first)"
    )


def ensure_secret(params: StackParams) -> str:
    """The secret, generated (0600, created exclusively) when the state has none and no cluster exists yet."""
    found = read_secret(params)
    if found is not None:
        return found
    if _trust_era(params):
        raise _trust_error(params)
    path = secret_path(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # an empty file left by a crash
    value = secrets.token_urlsafe(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def write_pgpass(params: StackParams, secret: str) -> Path:
    """libpq's password file for this stack's host:port and socket (any database, the stack user); 0600."""
    path = _state(params) / PGPASS_FILE
    user, word = _pgpass_field(params.user), _pgpass_field(secret)
    lines = "".join(
        f"{_pgpass_field(host)}:{params.postgres_port}:*:{user}:{word}\n"
        for host in (params.host, str(_state(params) / "socket"))
    )
    tmp = path.with_name(f".{PGPASS_FILE}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(lines)
    os.replace(tmp, path)
    return path


def redact(text: str, params: StackParams) -> str:
    """text with the secret (plain and URL-quoted) replaced by ***: for error messages quoting logs."""
    secret = read_secret(params)
    if not secret:
        return text
    return text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")


def log_tail(path: Path, lines: int = LOG_TAIL) -> str:
    """The last lines of a log, joined with ' | ' so an error stays one line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip()) or f"({path} is empty)"


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own http URL)
            return response.status == 200
    except (OSError, ValueError):
        return False


def _pg_connect(params: StackParams, dbname: str = "postgres", timeout: int = 2):  # noqa: ANN202 (psycopg2 connection)
    import psycopg2

    secret = read_secret(params)
    return psycopg2.connect(
        host=params.host,
        port=params.postgres_port,
        user=params.user,
        dbname=dbname,
        connect_timeout=timeout,
        **({"password": secret} if secret is not None else {}),
    )


def _auth_failed(exc: Exception) -> bool:
    return "password authentication failed" in str(exc) or "no password supplied" in str(exc)


def pg_ok(params: StackParams, *, strict: bool = False) -> bool:
    """True when PostgreSQL accepts a connection as the stack user with the secret. strict: a refused password
    is a BeastError (the secret does not match the cluster) instead of False."""
    import psycopg2

    try:
        _pg_connect(params).close()
    except psycopg2.Error as exc:
        if strict and _auth_failed(exc):
            raise BeastError(
                f"postgres: the server refuses the password in {secret_path(params)} for user {params.user}: "
                f"that file does not belong to this cluster ({_pg_data(params)})"
            ) from None
        return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, marker: str) -> bool:
    """pid runs and is ours: a live (not zombie) process whose command line names `marker` (guards pid reuse)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and marker in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _server_pid(params: StackParams, name: str) -> int | None:
    """The recorded pid of a server if it still runs."""
    pid = _read_pid(_pid_file(params, name))
    return pid if _alive(pid, name) else None


def _pg_pid(params: StackParams) -> int | None:
    """The postmaster's pid (from its postmaster.pid) if it runs."""
    pid = _read_pid(_pg_data(params) / "postmaster.pid")
    return pid if _alive(pid, "postgres") else None


def _group(pid: int) -> list[psutil.Process]:
    """The process and everything it spawned: its session (start_new_session) plus its descendants."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(pid)
        found[pid] = root
        found.update({c.pid: c for c in root.children(recursive=True)})
    except psutil.Error:
        pass
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == pid:
                found[proc.pid] = proc
        except OSError:
            continue
    return list(found.values())


def kill_group(pid: int, wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM the process's session and descendants, SIGKILL what is left after wait_s."""
    procs = _group(pid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=wait_s)
    for proc in alive + [p for p in _group(pid) if p not in alive]:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


# ---------------------------------------------------------------- PostgreSQL


def find_pg_bin(name: str) -> Path:
    """initdb / pg_ctl / ... from PATH, else the highest /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH)."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    candidates = [p / "bin" / name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / name).is_file()]
    candidates.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")])
    if not candidates:
        raise BeastError(
            f"PostgreSQL not found ({name} neither on PATH nor in /usr/lib/postgresql/*/bin): install it, e.g. `apt-get install postgresql`"
        )
    return candidates[-1]


def _as_pg_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise BeastError(
            f"running as root and there is no `{PG_OS_USER}` OS user to run PostgreSQL as: `apt-get install postgresql` creates it"
        ) from None
    return ["runuser", "-u", PG_OS_USER, "--", *argv]


def _give_to_pg_user(*paths: Path) -> None:
    """As root, hand the paths PostgreSQL writes to the `postgres` OS user (no-op otherwise)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(PG_OS_USER)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run_pg(argv: list[str], what: str, timeout: float) -> str:
    """Run a PostgreSQL tool (as `postgres` when root); its output, or a BeastError naming it."""
    try:
        done = subprocess.run(_as_pg_user(argv), cwd="/", capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BeastError(f"postgres: {what} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        out = " | ".join(line.strip() for line in (done.stdout + done.stderr).splitlines()[-LOG_TAIL:] if line.strip())
        raise BeastError(f"postgres: {what} failed (exit {done.returncode}): {out}")
    return done.stdout


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pg_conf(params: StackParams) -> str:
    """Settings rewritten on every `up` (included from postgresql.conf), so params changes apply: loopback only."""
    sock = _state(params) / "socket"
    return (
        f"listen_addresses = {_conf_quote(params.host)}\nport = {params.postgres_port}\n"
        f"unix_socket_directories = {_conf_quote(str(sock))}\npassword_encryption = 'scram-sha-256'\n"
    )


@contextlib.contextmanager
def _pwfile(params: StackParams, secret: str) -> Iterator[Path]:
    """The secret as initdb's --pwfile: the secret file itself, or as root a 0600 copy owned by `postgres` (who
    runs initdb) in the state dir, deleted on exit."""
    if os.geteuid() != 0:
        yield secret_path(params)
        return
    fd, name = tempfile.mkstemp(prefix=".initdb-pw-", dir=_state(params))  # 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret + "\n")
        _give_to_pg_user(path)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _pg_init(params: StackParams, secret: str) -> None:
    """initdb once (scram-sha-256 on socket and TCP, superuser = params.user with the secret as password),
    chowned to `postgres` when root; the stack's settings file."""
    data, sock, log = _pg_data(params), _state(params) / "socket", _log(params, "postgres")
    for d in (data, sock, log.parent):
        d.mkdir(parents=True, exist_ok=True)
    log.touch()
    _give_to_pg_user(data, sock, log)
    if (
        os.geteuid() == 0
        and subprocess.run(_as_pg_user(["test", "-w", str(data)]), cwd="/", check=False).returncode != 0
    ):
        raise BeastError(
            f"postgres: the `{PG_OS_USER}` OS user (PostgreSQL's runner when root) cannot enter {data}: make its parent folders traversable (chmod o+x) or set stack.state elsewhere"
        )
    if not (data / "PG_VERSION").exists():
        if any(data.iterdir()):
            raise BeastError(
                f"postgres: {data} is not empty and holds no database cluster: remove it or set stack.state elsewhere"
            )
        with _pwfile(params, secret) as pwfile:
            _run_pg(
                [
                    str(find_pg_bin("initdb")),
                    "-D",
                    str(data),
                    "-U",
                    params.user,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--no-locale",
                    "-E",
                    "UTF8",
                ],
                "initdb",
                120,
            )
        with open(data / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write("\ninclude_if_exists = 'beast-stack.conf'   # written by `beast stack up`\n")
    (data / "beast-stack.conf").write_text(pg_conf(params), encoding="utf-8")
    _give_to_pg_user(data / "beast-stack.conf")


def _pg_start(params: StackParams) -> None:
    """pg_ctl -w start in the background; waits for ready within start_timeout_s."""
    timeout = max(1, int(params.start_timeout_s))
    argv = [
        str(find_pg_bin("pg_ctl")),
        "-D",
        str(_pg_data(params)),
        "-l",
        str(_log(params, "postgres")),
        "-w",
        "-t",
        str(timeout),
        "start",
    ]
    try:
        _run_pg(argv, "pg_ctl start", timeout + 10)
    except BeastError as exc:
        raise BeastError(f"{exc}; log: {redact(log_tail(_log(params, 'postgres')), params)}") from None


def _pg_stop(params: StackParams) -> bool:
    """pg_ctl stop -m fast; False when it was not running."""
    if _pg_pid(params) is None:
        return False
    _run_pg(
        [str(find_pg_bin("pg_ctl")), "-D", str(_pg_data(params)), "-m", "fast", "-w", "-t", "60", "stop"],
        "pg_ctl stop",
        70,
    )
    return True


def create_databases(params: StackParams) -> list[str]:
    """Create the mlflow / prefect / optuna databases that do not exist yet; the names created."""
    from psycopg2 import sql

    wanted = [params.databases.mlflow, params.databases.prefect, params.databases.optuna]
    conn = _pg_connect(params, timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            have = {row[0] for row in cur.fetchall()}
            missing = [name for name in dict.fromkeys(wanted) if name not in have]
            for name in missing:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return missing


# ---------------------------------------------------------------- MLflow and Prefect servers


def _venv_script(name: str) -> str:
    """A console script of this interpreter's environment (the venv `uv run` uses)."""
    script = Path(sys.executable).parent / name
    if not script.is_file():
        raise BeastError(
            f"{name}: no {script} next to {sys.executable}: run through `uv run beast stack up` (make stack)"
        )
    return str(script)


def mlflow_argv(params: StackParams) -> list[str]:
    """One worker (2-core machines); artifacts proxied by the server into <state>/mlartifacts."""
    return [
        _venv_script("mlflow"), "server",  # backend store: MLFLOW_BACKEND_STORE_URI (child_env), not on the command line
        "--serve-artifacts", "--artifacts-destination", str(_state(params) / "mlartifacts"),
        "--host", params.host, "--port", str(params.mlflow_port), "--workers", "1",
    ]  # fmt: skip


def prefect_argv(params: StackParams) -> list[str]:
    return [
        _venv_script("prefect"),
        "server",
        "start",
        "--host",
        params.host,
        "--port",
        str(params.prefect_port),
        "--workers",
        "1",
    ]


def child_env(params: StackParams, name: str) -> dict[str, str]:
    """The parent's environment, telemetry off, and the server's database URL with the secret (in the environment:
    only its owner can read it, unlike a command line); Prefect's home inside the state dir."""
    env = {**os.environ, **TELEMETRY_OFF}
    secret = read_secret(params)
    if secret is None:
        raise BeastError(f"{name}: no {secret_path(params)}: start the stack with `beast stack up`")
    with_secret = urls(params, secret)
    if name == "mlflow":  # its GenAI job runner (7 huey consumers) serves nothing here and would crowd 2 cores
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        env["MLFLOW_BACKEND_STORE_URI"] = with_secret.mlflow_backend
    if name == "prefect":
        env.pop("PREFECT_API_URL", None)  # the server is the API; a client setting must not point it elsewhere
        env.update(
            PREFECT_SERVER_DATABASE_CONNECTION_URL=with_secret.prefect_db, PREFECT_HOME=str(_state(params) / "prefect")
        )
    return env


@dataclass(frozen=True)
class Server:
    """How to start and probe one HTTP server of the stack."""

    name: str
    port: int
    url: str  # what clients use (`urls`)
    argv: Callable[[StackParams], list[str]]

    @property
    def health(self) -> str:
        return f"{self.url}/health"


def servers(params: StackParams) -> tuple[Server, ...]:
    u = urls(params)
    return (
        Server("mlflow", params.mlflow_port, u.mlflow_tracking, mlflow_argv),
        Server("prefect", params.prefect_port, u.prefect_api, prefect_argv),
    )


def _spawn(params: StackParams, server: Server) -> subprocess.Popen:
    """Start a server in its own session, output to its log, pid to its pid file."""
    log = _log(params, server.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    (_state(params) / "prefect").mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            server.argv(params),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(params, server.name),
            cwd=_state(params),
            start_new_session=True,
        )
    _pid_file(params, server.name).write_text(f"{proc.pid}\n")
    return proc


def _taken(params: StackParams, name: str, port: int) -> BeastError:
    return BeastError(
        f"{name}: port {port} on {params.host} is taken by another process (not this stack's {name}): stop it or set stack.{name}_port in params.yaml"
    )


# ---------------------------------------------------------------- up / down / status


def _check(params: StackParams, name: str, proc: subprocess.Popen | None, deadline: float) -> None:
    """A dead child or a passed deadline while starting is a BeastError with the tail of its log."""
    log = _log(params, name)
    if proc is not None and proc.poll() is not None:
        raise BeastError(
            f"{name}: exited with code {proc.returncode} while starting; log {log}: {redact(log_tail(log), params)}"
        )
    if time.monotonic() > deadline:
        raise BeastError(
            f"{name}: not healthy within stack.start_timeout_s = {params.start_timeout_s:g} s; log {log}: {redact(log_tail(log), params)}"
        )


def _wait(
    params: StackParams, name: str, ready: Callable[[], bool], proc: subprocess.Popen | None, deadline: float
) -> None:
    while not ready():
        _check(params, name, proc, deadline)
        time.sleep(0.25)


def _up_postgres(params: StackParams, secret: str, started: list[str], deadline: float) -> None:
    t0 = time.monotonic()
    where = f"{params.host}:{params.postgres_port}"
    if _pg_pid(params) is not None:
        _wait(params, "postgres", lambda: pg_ok(params, strict=True), None, deadline)
        print(f"postgres: already up on {where} (pid {_pg_pid(params)})", flush=True)
        return
    if not port_free(params.host, params.postgres_port):
        raise _taken(params, "postgres", params.postgres_port)
    _pg_init(params, secret)
    started.append("postgres")
    _pg_start(params)
    _wait(params, "postgres", lambda: pg_ok(params, strict=True), None, deadline)
    print(f"postgres: up on {where} ({time.monotonic() - t0:.1f} s)", flush=True)


def up(params: StackParams) -> StackUrls:
    """Start what is not running (PostgreSQL, then both servers in parallel), wait until healthy; on failure stop
    what this call started. Idempotent: components already up are left alone."""
    for tool in ("initdb", "pg_ctl"):
        find_pg_bin(tool)  # fail before anything starts
    state = _state(params)
    state.mkdir(parents=True, exist_ok=True)
    secret = ensure_secret(params)  # refuses a trust-era stack before anything starts
    write_pgpass(params, secret)
    deadline = time.monotonic() + params.start_timeout_s
    started: list[str] = []
    try:
        _up_postgres(params, secret, started, deadline)
        for name in create_databases(params):
            print(f"postgres: created database {name}", flush=True)
        pending: list[tuple[Server, subprocess.Popen | None, float]] = []
        for server in servers(params):
            if _server_pid(params, server.name) is not None:
                pending.append((server, None, time.monotonic()))
                continue
            _pid_file(params, server.name).unlink(missing_ok=True)
            if not port_free(params.host, server.port):
                raise _taken(params, server.name, server.port)
            pending.append((server, _spawn(params, server), time.monotonic()))
            started.append(server.name)
        while pending:  # the servers start in parallel: report each as it turns healthy
            for item in list(pending):
                server, proc, t0 = item
                if not http_ok(server.health):
                    _check(params, server.name, proc, deadline)
                    continue
                pending.remove(item)
                started_in = (
                    f"({time.monotonic() - t0:.1f} s)"
                    if proc is not None
                    else f"(pid {_server_pid(params, server.name)})"
                )
                print(
                    f"{server.name}: {'up' if proc is not None else 'already up'} on {server.url} {started_in}",
                    flush=True,
                )
            time.sleep(0.25 if pending else 0)
    except BaseException:
        _stop(params, [n for n in ("prefect", "mlflow", "postgres") if n in started])
        raise
    return urls(params)


def _stop(params: StackParams, names: list[str]) -> list[str]:
    """Stop the named components (servers: whole session; postgres: pg_ctl stop); lines saying what happened."""
    lines = []
    for name in names:
        if name == "postgres":
            lines.append("postgres: stopped" if _pg_stop(params) else "postgres: not running")
            continue
        pid = _server_pid(params, name)
        if pid is not None:
            kill_group(pid)
        _pid_file(params, name).unlink(missing_ok=True)
        lines.append(f"{name}: stopped (pid {pid})" if pid is not None else f"{name}: not running")
    return lines


def down(params: StackParams) -> list[str]:
    """Stop Prefect, MLflow, then PostgreSQL; idempotent (says `not running` for each that is not)."""
    if not _state(params).exists():
        return [f"stack: nothing at {params.state} (not running)"]
    return _stop(params, ["prefect", "mlflow", "postgres"])


def status(params: StackParams) -> list[Status]:
    """Each component: up (process alive and answering), pid, url."""
    pg = _pg_pid(params)
    rows = [
        Status(
            "postgres",
            pg is not None and pg_ok(params),
            pg,
            f"{urls(params).postgres}/{{{params.databases.mlflow},{params.databases.prefect},{params.databases.optuna}}}",
        )
    ]
    for server in servers(params):
        pid = _server_pid(params, server.name)
        rows.append(Status(server.name, pid is not None and http_ok(server.health), pid, server.url))
    return rows


def render_status(rows: list[Status]) -> str:
    return "".join(
        f"{r.name:<9}{'up' if r.up else 'down':<5} pid {r.pid if r.pid is not None else '-':<8} {r.url}\n" for r in rows
    )
