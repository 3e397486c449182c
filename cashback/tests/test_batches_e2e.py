"""Batch upload end to end: the signed API over real HTTP, a real Celery worker, the sandbox paying.

Every chunk is delivered three times (the upload's own start and two more dispatches racing it), as
an at-least-once broker may: each row is still recorded, counted and paid exactly once.
"""

import csv
import io
import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import requests
from django.conf import settings as django_settings

from cashback import batches
from cashback.models import Batch, BatchRow, Transaction
from partners.signing import signed_headers
from wallets.models import Payout
from wallets.tests.conftest import (  # noqa: F401 - fixtures
    ROOT,
    Worker,
    breakers_closed,
    routes,
    sandbox,
    sandbox_process,
    wait_for,
    wait_terminal,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PATH = "/api/v1/batches"


class BatchWorker(Worker):
    """The harness's worker, consuming the batch queue as well, as `celery -A cezbek worker` without -Q does."""

    def start(self):
        log = open(self.log_path, "a")
        queues = f"{self.env['CEZBEK_QUEUE']},{django_settings.CEZBEK_BATCH_QUEUE}"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "cezbek", "worker", "-l", "info", "-P", "prefork",
                "-c", str(self.concurrency), "-Q", queues, "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", f"e2e-batch-{os.getpid()}@%h",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: b" ready." in self.log_path.read_bytes() or self.process.poll() is not None, 60, "the worker")
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]


@pytest.fixture
def batch_worker(sandbox, live_server, tmp_path, settings):
    from wallets.tests.conftest import worker_env

    worker = BatchWorker(worker_env(sandbox, live_server, settings), tmp_path / "worker.log", concurrency=2)
    worker.start()
    yield worker
    worker.stop()
    print(f"worker log: {worker.log_path}")


def signed(partner_credential, method: str, path: str, body: bytes) -> dict:
    return signed_headers(key_id=partner_credential.key_id, secret=partner_credential.secret, method=method, path=path, body=body, timestamp=int(time.time()))


def test_a_batch_is_recorded_counted_and_paid_once_by_a_real_worker(
    live_server, batch_worker, sandbox, routes, breakers_closed, ladder, global_rule, partner, settings
):
    _, credential = partner
    settings.CEZBEK_BATCH_CHUNK_SIZE = 20
    # given 100 purchases of 40 customers, a repeat of one of them and a row that is wrong
    lines = [f"E2E/{i:03d},62812{i % 40:08d},,1,{100000 + i}.00,{('LSAJA', 'GPAID', 'JOSVO')[i % 3]}\n" for i in range(100)]
    lines += ["E2E/000,6281200000000,,1,100000.00,LSAJA\n", "E2E/BAD,6281200000001,,0,100000.00,LSAJA\n"]
    body = ("partner_ref,msisdn,email,quantity,amount,wallet\n" + "".join(lines)).encode()
    # when a partner uploads it over HTTP
    response = requests.post(live_server.url + PATH, data=body, headers={**signed(credential, "POST", PATH, body), "Content-Type": "text/csv"}, timeout=30)
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    batch = Batch.objects.get(public_id=batch_id)
    assert batch.chunks > 3
    # and the broker delivers every chunk twice more, racing the first delivery
    assert batches.batch_dispatch(batch_id=batch.pk) == batch.chunks
    assert batches.batch_dispatch(batch_id=batch.pk) == batch.chunks

    def progress():
        path = f"{PATH}/{batch_id}"
        answer = requests.get(live_server.url + path, headers=signed(credential, "GET", path, b""), timeout=10).json()
        return answer if answer["status"] == "DONE" else None

    done = wait_for(progress, 90, "the batch to be DONE", interval=1.0)
    # then every row was counted once
    assert {k: done[k] for k in ["total", "processed", "accepted", "duplicate", "failed"]} == {
        "total": 102, "processed": 102, "accepted": 100, "duplicate": 1, "failed": 1,
    }
    path = f"{PATH}/{batch_id}/results"
    results = requests.get(live_server.url + path, headers=signed(credential, "GET", path, b""), timeout=30)
    assert results.status_code == 200 and results.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(results.text)))
    assert [r["outcome"] for r in rows] == ["accepted"] * 100 + ["duplicate", "failed"]
    assert rows[100]["kezbek_ref"] == rows[0]["kezbek_ref"] and rows[101]["error_field"] == "quantity"
    # and recorded once: one transaction and one payout per accepted row
    assert Transaction.objects.filter(partner_ref__startswith="E2E/").count() == 100
    assert set(BatchRow.objects.filter(batch=batch).values_list("outcome", flat=True)) == {"accepted", "duplicate", "failed"}
    # the extra deliveries found their chunk done (or held by the first): nothing ran twice
    wait_for(lambda: batch_worker.log_path.read_text().count("cashback.batch_chunk[") >= 6 * batch.chunks, 30, "every delivery to finish")
    log = batch_worker.log_path.read_text()
    assert log.count("'done'") == batch.chunks
    assert log.count("'skipped'") + log.count("'busy'") == 2 * batch.chunks
    # and paid once: every payout succeeded, and the sandbox's books hold exactly one credit per payout
    payouts = list(Payout.objects.filter(transaction__partner_ref__startswith="E2E/").select_related("transaction"))
    assert len(payouts) == 100
    wait_terminal([p.pk for p in payouts], timeout=120)
    statuses = set(Payout.objects.filter(pk__in=[p.pk for p in payouts]).values_list("status", flat=True))
    assert statuses == {"SUCCEEDED"}
    by_msisdn = {}
    for credit in sandbox.ledger():
        by_msisdn.setdefault(credit["msisdn"], []).append(Decimal(credit["amount"]))
    expected = {}
    for payout in payouts:
        expected.setdefault(payout.msisdn, []).append(payout.amount)
    assert {m: sorted(a) for m, a in by_msisdn.items()} == {m: sorted(a) for m, a in expected.items()}
