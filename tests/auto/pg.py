"""A real PostgreSQL server for a test, started in a temporary folder on a
free loopback port: the Debian/Ubuntu ``postgresql`` package's initdb and
pg_ctl (as the ``postgres`` system user when the tests run as root:
PostgreSQL refuses to run as root), else the ``pgserver`` wheel if it is
installed. ``start()`` returns a server or raises ``Unavailable`` saying why."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the reason is the message)."""


def _bindir() -> str | None:
    for name in ("initdb", "pg_ctl"):
        if shutil.which(name) is None:
            break
    else:
        return os.path.dirname(shutil.which("initdb"))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return os.path.dirname(found[0]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running server; ``database()`` creates a fresh database and returns its URL."""

    def __init__(self, host: str, port: int, user: str, stop):
        self.host, self.port, self.user, self._stop = host, port, user, stop

    def database(self) -> str:
        name = f"auto_{uuid.uuid4().hex[:10]}"
        conn = _driver().connect(host=self.host, port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE {name}")
        conn.close()
        return f"postgresql://{self.user}@{self.host}:{self.port}/{name}"

    def stop(self) -> None:
        self._stop()


def _system_server() -> Server:
    bindir = _bindir()
    if bindir is None:
        raise Unavailable("initdb/pg_ctl not found (apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        if shutil.which("runuser") is None:
            raise Unavailable("running as root and runuser is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="torchslim-pg-")
    if as_user:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o700)
    data, log, port = os.path.join(root, "data"), os.path.join(root, "server.log"), _free_port()

    def run(*cmd, timeout=60):
        r = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise Unavailable(f"{os.path.basename(cmd[0])} failed: {(r.stderr or r.stdout).strip()[-500:]}")

    def stop() -> None:
        subprocess.run([*as_user, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    try:
        run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start", timeout=90)
    except (Unavailable, OSError, subprocess.SubprocessError) as e:
        stop()
        raise Unavailable(str(e)) from None
    return Server("127.0.0.1", port, "postgres", stop)


def _pgserver() -> Server:
    try:
        import pgserver
    except ImportError:
        raise Unavailable("the pgserver wheel is not installed") from None
    root = tempfile.mkdtemp(prefix="torchslim-pgserver-")
    srv = pgserver.get_server(root, cleanup_mode="stop")
    url = srv.get_uri()  # postgresql://postgres:@/postgres?host=...
    from sqlalchemy.engine import make_url

    u = make_url(url)
    host = u.query.get("host") or u.host or "127.0.0.1"

    def stop() -> None:
        srv.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    return Server(host if isinstance(host, str) else host[0], u.port or 5432, u.username or "postgres", stop)


def _driver():
    """psycopg (SQLAlchemy's default PostgreSQL driver), else psycopg2."""
    try:
        import psycopg

        return psycopg
    except ImportError:
        import psycopg2

        return psycopg2


def start() -> Server:
    try:
        _driver()
    except ImportError:
        raise Unavailable("no PostgreSQL driver is installed (pip install 'torchslim[auto]': psycopg)") from None
    reasons = []
    for make in (_system_server, _pgserver):
        try:
            server = make()
            server.database()  # it answers
            return server
        except Unavailable as e:
            reasons.append(str(e))
        except Exception as e:  # noqa: BLE001 - a server that starts but does not answer
            reasons.append(f"{type(e).__name__}: {e}")
    raise Unavailable("; ".join(reasons))
