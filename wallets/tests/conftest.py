"""End-to-end harness: the sandbox, a real Celery worker and the live API, over HTTP, on PostgreSQL.

The worker is a separate process group (so the whole worker can be SIGKILLed), using the test
database, the same Redis broker and a queue of its own, with short timeouts and an embedded beat
running the sweeper every second.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]

WORKER_APPLICATION_NAME = "cezbek-e2e-worker"

FAST = {
    "CEZBEK_PROVIDER_CONNECT_TIMEOUT": "1",
    "CEZBEK_PROVIDER_READ_TIMEOUT": "1",
    "CEZBEK_UNKNOWN_GRACE_SECONDS": "2.5",
    "CEZBEK_CALLBACK_WAIT_SECONDS": "4",
    "CEZBEK_RETRY_BASE_SECONDS": "0.5",
    "CEZBEK_RETRY_MAX_SECONDS": "3",
    "CEZBEK_SENDING_STALE_SECONDS": "6",
    "CEZBEK_PENDING_IDLE_SECONDS": "3",
    "CEZBEK_SWEEP_INTERVAL_SECONDS": "1",
    "CEZBEK_BREAKER_FAIL_MAX": "3",
    "CEZBEK_BREAKER_RESET_SECONDS": "3",
    "CEZBEK_RESOLVE_MAX_CHECKS": "8",
    # Tests configure fees and providers right before buying: the worker must not route a payout
    # on a snapshot it loaded while the configuration was being written (one Redis GET per read).
    "CEZBEK_CONFIG_CACHE_SECONDS": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Sandbox:
    def __init__(self, url: str):
        self.url = url

    def reset(self):
        requests.post(f"{self.url}/_sandbox/reset", timeout=5).raise_for_status()

    def faults(self, faults: dict):
        response = requests.post(f"{self.url}/_sandbox/faults", json=faults, timeout=5)
        assert response.status_code == 200, response.text

    def ledger(self, provider: str | None = None) -> list[dict]:
        params = {"provider": provider} if provider else {}
        return requests.get(f"{self.url}/_sandbox/ledger", params=params, timeout=10).json()["credits"]


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("sandbox") / "sandbox.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "wallets.sandbox", "--port", str(port), "--seed", "7"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{url}/_sandbox/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for(healthy, 20, "the sandbox")
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def sandbox(sandbox_process, settings):
    box = Sandbox(sandbox_process)
    box.reset()
    # The test process's own clients (inquiries in tests, callbacks) reach the same sandbox.
    settings.CEZBEK_SANDBOX_URL = sandbox_process
    settings.CEZBEK_PROVIDERS = {code: {**conf, "url": f"{sandbox_process}/{code.lower()}"} for code, conf in settings.CEZBEK_PROVIDERS.items()}
    for name, value in FAST.items():
        setattr(settings, name, type(getattr(settings, name))(value))
    yield box
    box.reset()


class Worker:
    """A real `celery -A cezbek worker` (with an embedded beat for the sweeper)."""

    def __init__(self, env: dict, log_path: Path, concurrency: int = 4):
        self.env, self.log_path, self.concurrency = env, log_path, concurrency
        self.process = None

    def start(self):
        log = open(self.log_path, "a")
        schedule = self.log_path.with_suffix(f".beat-{time.monotonic_ns()}")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "cezbek", "worker", "-l", "info",
                "-P", "prefork", "-c", str(self.concurrency), "-Q", self.env["CEZBEK_QUEUE"],
                "-B", "--scheduler", "celery.beat:PersistentScheduler", "-s", str(schedule),
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"e2e-{os.getpid()}@%h",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        wait_for(lambda: b" ready." in self.log_path.read_bytes()[start:] or self.process.poll() is not None, 60, "the worker")
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]

    def kill(self):
        """SIGKILL the whole worker: main process, pool children and beat, mid-task."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if not self.process:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:  # pool children that outlived the main process still hold database sessions
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        wait_for(lambda: _sessions_on_test_database() == 0, 20, "the worker's database sessions to close")


def _sessions_on_test_database() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [WORKER_APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


def queue_purge(queues: list[str]) -> None:
    """Drops tasks that tests without a worker queued (API calls publish payouts): a new test's
    worker starts on an empty queue instead of delivering other tests' payouts."""
    from cezbek.celery import app

    with app.connection_for_write() as connection:
        for queue in queues:
            connection.default_channel.queue_purge(queue)


def worker_env(sandbox, live_server, settings) -> dict:
    """The environment of an end-to-end worker: the test database, the sandbox, the live API, FAST timings."""
    db = connection.settings_dict
    env = {
        **os.environ,
        **FAST,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?application_name={WORKER_APPLICATION_NAME}",
        "CEZBEK_SANDBOX_URL": sandbox.url,
        "CEZBEK_PUBLIC_URL": live_server.url,
        "CEZBEK_LOG_LEVEL": "INFO",
    }
    for code in settings.CEZBEK_PROVIDERS:
        env.pop(f"CEZBEK_PROVIDER_{code}_URL", None)
    queue_purge([settings.CELERY_TASK_DEFAULT_QUEUE, settings.CEZBEK_BATCH_QUEUE])
    return env


@pytest.fixture
def worker(sandbox, live_server, tmp_path, settings):
    w = Worker(worker_env(sandbox, live_server, settings), tmp_path / "worker.log")
    w.start()
    yield w
    w.stop()
    print(f"worker log: {w.log_path}")


@pytest.fixture
def routes(db, wallets):
    """Providers and a fee table where the cheapest route differs by wallet and by amount.

    LSAJA: MTRANS 500 + 0.5 % beats XENIT 750 flat below 50,000, and loses above it.
    GPAID: GOPAIDH2H 300 flat is cheapest. JOSVO: XENIT 750 flat beats JOSVOH2H 900 flat;
    MTRANS 500 + 0.5 % wins below 50,000.
    """
    from wallets.models import Fee, Provider

    providers = {
        code: Provider.objects.create(code=code, name=code.title(), kind=kind, priority=priority)
        for code, kind, priority in [
            ("LSAJAH2H", "h2h", 1), ("GOPAIDH2H", "h2h", 1), ("JOSVOH2H", "h2h", 1), ("MTRANS", "aggregator", 2), ("XENIT", "aggregator", 3),
        ]
    }
    table = [
        ("LSAJAH2H", "LSAJA", "1000", "0"), ("MTRANS", "LSAJA", "500", "0.5"), ("XENIT", "LSAJA", "750", "0"),
        ("GOPAIDH2H", "GPAID", "300", "0"), ("MTRANS", "GPAID", "500", "0.5"), ("XENIT", "GPAID", "750", "0"),
        ("JOSVOH2H", "JOSVO", "900", "0"), ("MTRANS", "JOSVO", "500", "0.5"), ("XENIT", "JOSVO", "750", "0"),
    ]
    for provider, wallet, flat, pct in table:
        Fee.objects.create(provider=providers[provider], wallet=wallets[wallet], flat_fee=Decimal(flat), percent_fee=Decimal(pct))
    return providers


@pytest.fixture
def breakers_closed(sandbox):
    from wallets.breakers import breakers_reset

    breakers_reset()
    yield
    breakers_reset()


def wait_terminal(payout_ids, timeout=60):
    from wallets.models import Payout

    def done():
        rows = dict(Payout.objects.filter(pk__in=payout_ids).values_list("pk", "status"))
        return all(status in Payout.TERMINAL for status in rows.values()) and rows

    return wait_for(done, timeout, f"{len(payout_ids)} payouts to reach a terminal state", interval=0.3)
