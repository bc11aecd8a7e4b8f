"""A server's generation: its workers live and die with the ``bentoml serve`` process that started them.

BentoML's arbiter starts every worker in a session of its own, so when the arbiter is killed hard
(``kill -9`` of ``make serve``'s group, an OOM kill) nothing reaches the workers: they go on holding
the port and answering with the dead server's plan, and the next ``make serve`` cannot bind. So each
worker asks Linux for a signal when its parent dies (``PR_SET_PDEATHSIG``) and also watches its parent
pid, the portable fallback. Either way it stops itself with SIGTERM (a clean shutdown: the
prediction log is closed and the journal shipped) and, if that has not ended it within
``GRACE_SECONDS``, exits at once; the journal is in the kernel by then, so nothing answered is lost.

The generation is the arbiter: its pid and start time, shown in ``/readyz`` so a health check can tell
a new server from an old one still answering.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TypedDict

import psutil
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet import plan_sync
from fleet.http import send_json

WATCH_SECONDS = 0.25  # how often a worker checks that its parent is alive (if the signal never came)
GRACE_SECONDS = 1.0  # an orphan gets this long to stop cleanly before it exits (in all: under 2 s)
PR_SET_PDEATHSIG = 1
_parent: int | None = None  # the pid that started this worker, once watched


class Generation(TypedDict):
    pid: int  # the ``bentoml serve`` process (the arbiter)
    started_at: str  # ISO 8601, UTC


def generation() -> Generation:
    """The generation of the server this worker belongs to: its parent."""
    pid = os.getppid()
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = 0.0
    return {"pid": pid, "started_at": _iso(started)}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def die_with_parent() -> None:
    """Make this worker stop when the process that started it dies, however it died. Idempotent; call
    it as early as the worker runs (a worker still loading its models must not outlive the server)."""
    global _parent
    if _parent is not None:
        return
    _parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):  # Linux only; the watchdog covers the rest
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    threading.Thread(target=_watch, name="fleet-parent-watch", daemon=True).start()


def _watch() -> None:
    """Once the parent is gone: a clean stop (SIGTERM: uvicorn's graceful shutdown closes the log), and
    an exit ``GRACE_SECONDS`` later whatever that stop is waiting for."""
    while os.getppid() == _parent:
        time.sleep(WATCH_SECONDS)
    threading.Timer(GRACE_SECONDS, os._exit, args=(0,)).start()
    os.kill(os.getpid(), signal.SIGTERM)


class Readiness:
    """ASGI middleware: ``/readyz`` keeps BentoML's status (200 once the service is ready) and says in
    its JSON body which generation and worker answered and whether that worker's plan loaded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/readyz":
            await self.app(scope, receive, send)
            return
        status = 503

        async def keep_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, keep_status)
        own = plan_sync.own_status() or {}
        worker = {"pid": os.getpid(), "index": own.get("worker"), "plan_revision": own.get("revision"),
                  "plan_errors": own.get("errors", {})}
        body = {"ready": status == 200, "generation": generation(), "worker": worker}
        await send_json(send, status, body)


def listeners(port: int) -> list[psutil.Process]:
    """Every process holding a listening TCP socket on ``port`` (the arbiter and its workers share one)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in process.net_connections("tcp")):
                found.append(process)
    return found


def who_holds(host: str, port: int) -> str | None:
    """Why a new server could not bind ``host:port`` (which processes hold it), or None if it can."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return None
        except OSError:
            pass
    held = listeners(port)
    if not held:
        return f"{host}:{port} is in use by a process this user cannot see; choose another PORT."
    pids = {p.pid for p in held}
    lines, to_stop = [f"{host}:{port} is already served by:"], []
    for process in held:
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            worker = "_bentoml_impl.worker" in command
            if worker and process.ppid() in pids:
                role = f"a worker of server {process.ppid()}"
            else:
                role = "an orphaned worker: its server died" if worker else "the server"
                to_stop.append(process.pid)
            started = _iso(process.create_time())
            lines.append(f"  pid {process.pid}, {role}, started {started}: {command[:72]}")
    lines.append(f"Stop it first (kill {' '.join(map(str, to_stop))}) or choose another PORT.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m fleet.lifetime HOST PORT``: exit 1, saying who holds the port, if a server could not
    bind it (``make serve`` runs this first)."""
    host, port = (argv or sys.argv[1:])[:2]
    problem = who_holds(host, int(port))
    if problem:
        print(f"make serve: not starting. {problem}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
