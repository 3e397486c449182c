"""The real web process for tests: gunicorn with the project's gunicorn.conf.py, as the Procfile runs it."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn_running(
    *, env: dict, log_path: Path, args: tuple = (), ready: Callable[[str, subprocess.Popen], bool] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Starts `gunicorn cezbek.wsgi --config gunicorn.conf.py` on a free port with `env` (the whole
    environment), waits until /healthz answers and `ready(base, server)` holds, yields (base URL,
    server); stops it on the way out. Its output goes to `log_path`, quoted when it fails to start."""
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "cezbek.wsgi", "--config", "gunicorn.conf.py", *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{base}/healthz", timeout=5).ok and (ready is None or ready(base, server)):
                        break
                except requests.RequestException:  # refused before the bind, or a worker still booting
                    pass
                assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.2)
            yield base, server
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
