"""Batch uploads (DOMAIN.md §9, API.md `/api/v1/batches`): the API, the rows' outcomes, the chunks.

Chunks run in-process here by calling the Celery task (its code, without a broker or the worker's
signals, which would close the test's connection); test_batches_e2e.py drives a real worker.
"""

import csv
import io
import json
import itertools
import threading
import time
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, connections

from cashback import batches
from cashback.models import Batch, BatchChunk, BatchRow, Transaction
from cashback.tasks import batch_chunk
from loyalty.models import JourneyEntry, LoyaltyState
from wallets.models import Payout, PayoutEvent

PATH = "/api/v1/batches"
HEADER = "partner_ref,msisdn,email,quantity,amount,wallet\n"


def post_csv(api, body: bytes | str, *, content_type="text/csv", path=PATH, sign_body=None, timestamp=None):
    body = body.encode() if isinstance(body, str) else body
    headers = api.headers("POST", path, body if sign_body is None else sign_body, timestamp)
    return api.client.generic("POST", path, body, content_type=content_type, headers=headers)


_nonce = itertools.count()


def get(api, path: str, *, accept: str | None = None):
    """A signed GET; a query parameter the views ignore makes each signature new, so repeats are no replays."""
    path = f"{path}?nonce={next(_nonce)}"
    headers = api.headers("GET", path, b"")
    if accept:
        headers["Accept"] = accept
    return api.client.generic("GET", path, b"", headers=headers)


def queue_depth() -> int:
    """Messages waiting in the payouts' queue on the configured broker (Redis, or the filesystem without it)."""
    from django.conf import settings

    from cezbek.celery import app

    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=settings.CELERY_TASK_DEFAULT_QUEUE).message_count


def run_chunks(batch: Batch) -> list[str]:
    """Every chunk of the batch, through the Celery task's own code."""
    return [batch_chunk(batch.pk, n) for n in range(batch.chunks)]


def results(api, batch_id: str) -> list[dict]:
    response = get(api, f"{PATH}/{batch_id}/results")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def books():
    return (
        Transaction.objects.count(), Payout.objects.count(), LoyaltyState.objects.count(), JourneyEntry.objects.count(),
        PayoutEvent.objects.count(), Batch.objects.count(), BatchRow.objects.count(), BatchChunk.objects.count(),
    )


@pytest.fixture
def setup(wallets, ladder, global_rule):
    return global_rule


# --- rows recorded like single purchases -----------------------------------------------------------


def test_rows_get_the_outcomes_of_single_purchases(api, setup):
    # given a purchase already posted one by one through the single-purchase API
    single = api.post("/api/v1/cashbacks", {"partner_ref": "INV/1", "msisdn": "628118770510", "quantity": 2, "amount": "750000.00", "wallet": "LSAJA"})
    assert single.status_code == 201
    body = (
        HEADER
        + "INV/1,08118770510,,2,750000,lsaja\n"  # the same purchase, written differently: duplicate
        + "INV/2,628118770511,B@X.id,1,100000.50,GPAID\n"  # new: accepted
        + "INV/1,628118770510,,3,750000.00,LSAJA\n"  # same ref, other content: conflict
        + "INV/3,12345,not-an-email,0,-5,LSAJA\n"  # invalid: every wrong field named
        + "INV/4,628118770512,,1,5000.00,OVO\n"  # unknown wallet
        + "\n"  # a blank line: no purchase, keeps its row number
        + "INV/5,628118770513,,1,750,000.00,LSAJA\n"  # an unquoted comma shifts the cells: refused, never guessed
        + "INV/6,628118770514,,,2000.00,JOSVO\n"  # a required cell left empty
    )
    # when the file is uploaded and its chunks run
    response = post_csv(api, body)
    assert response.status_code == 202, response.content
    document = response.json()
    assert document["status"] == "QUEUED" and document["total"] == 7 and document["processed"] == 0
    assert response["Location"] == f"{PATH}/{document['id']}"
    batch = Batch.objects.get(public_id=document["id"])
    assert run_chunks(batch) == ["done"] * batch.chunks
    # then each row has the outcome POST /cashbacks would have given it
    rows = results(api, document["id"])
    first = Transaction.objects.get(partner_ref="INV/1")
    second = Transaction.objects.get(partner_ref="INV/2")
    assert [(r["row"], r["partner_ref"], r["outcome"], r["kezbek_ref"], r["cashback"], r["reward"], r["total"], r["error_code"], r["error_field"]) for r in rows] == [
        ("2", "INV/1", "duplicate", first.kezbek_ref, "7500.00", "0.00", "7500.00", "", ""),
        ("3", "INV/2", "accepted", second.kezbek_ref, "1000.01", "0.00", "1000.01", "", ""),
        ("4", "INV/1", "failed", "", "", "", "", "conflict", "partner_ref"),
        ("5", "INV/3", "failed", "", "", "", "", "validation_error", "msisdn;email;quantity;amount"),
        ("6", "INV/4", "failed", "", "", "", "", "unknown_wallet", "wallet"),
        ("8", "INV/5", "failed", "", "", "", "", "validation_error", "row"),
        ("9", "INV/6", "failed", "", "", "", "", "validation_error", "quantity"),
    ]
    messages = {r["row"]: r["error_message"] for r in rows}
    assert messages["4"] == "partner_ref 'INV/1' was already used for a different purchase."
    assert messages["5"] == (
        "msisdn: Must be an Indonesian mobile number starting with +62, 62 or 0.; email: Enter a valid email address.; "
        "quantity: Must be between 1 and 10000.; amount: Must be greater than 0."
    )
    assert messages["6"] == "wallet: Unknown or inactive wallet 'OVO'."
    assert messages["8"] == "Has 7 values; the header has 6 columns."
    assert messages["9"] == "quantity: This field is required."
    # and the books hold exactly one new purchase, its payout and the batch's counts
    assert second.email == "b@x.id" and second.amount == Decimal("100000.50") and second.wallet.code == "GPAID"
    assert Transaction.objects.count() == 2 and Payout.objects.count() == 2
    assert second.payout.amount == Decimal("1000.01") and second.payout.status == "PENDING"
    progress = get(api, f"{PATH}/{document['id']}").json()
    assert {k: progress[k] for k in ["status", "total", "processed", "accepted", "duplicate", "failed"]} == {
        "status": "DONE", "total": 7, "processed": 7, "accepted": 1, "duplicate": 1, "failed": 5,
    }
    assert progress["finished_at"] is not None and progress["started_at"] is not None


def test_a_row_repeating_a_purchase_whose_wallet_was_deactivated_is_a_duplicate(api, setup, wallets):
    # given a purchase stored through the single-purchase API, paid to JOSVO, and JOSVO deactivated since
    single = api.post("/api/v1/cashbacks", {"partner_ref": "INV/1", "msisdn": "628118770510", "quantity": 2, "amount": "750000.00", "wallet": "JOSVO"})
    assert single.status_code == 201
    wallets["JOSVO"].active = False
    wallets["JOSVO"].save()
    body = (
        HEADER
        + "INV/1,628118770510,,2,750000.00,josvo\n"  # the same purchase: duplicate, as POST /cashbacks answers it
        + "INV/1,628118770510,,3,750000.00,JOSVO\n"  # same ref, other content: conflict
        + "INV/2,628118770511,,1,5000.00,JOSVO\n"  # a new purchase: refused for the wallet
    )
    batch = Batch.objects.get(public_id=post_csv(api, body).json()["id"])
    assert run_chunks(batch) == ["done"] * batch.chunks
    rows = results(api, batch.public_id)
    assert [(r["row"], r["outcome"], r["kezbek_ref"], r["error_code"]) for r in rows] == [
        ("2", "duplicate", single.json()["kezbek_ref"], ""),
        ("3", "failed", "", "conflict"),
        ("4", "failed", "", "unknown_wallet"),
    ]
    assert Transaction.objects.count() == 1


def test_a_customers_rows_are_recorded_in_file_order_across_chunks(api, setup, settings):
    # given chunks of 2 rows and one customer whose five purchases are spread over the file
    settings.CEZBEK_BATCH_CHUNK_SIZE = 2
    lines = []
    for i in range(1, 11):
        msisdn = "628118770510" if i % 2 else f"62811877{i:04d}"
        lines.append(f"R{i},{msisdn},,1,100000,LSAJA\n")
    batch = Batch.objects.get(public_id=post_csv(api, HEADER + "".join(lines)).json()["id"])
    # then the customer's rows share one chunk, so they cannot run out of order
    chunk_of = dict(BatchRow.objects.filter(batch=batch).values_list("partner_ref", "chunk"))
    assert len({chunk_of[f"R{i}"] for i in (1, 3, 5, 7, 9)}) == 1
    assert batch.chunks == len(set(chunk_of.values())) == 4
    # when the chunks run in reverse order
    for n in reversed(range(batch.chunks)):
        assert batch_chunk(batch.pk, n) == "done"
    # then the fifth purchase in the file is the one that earns BRONZE's 5th-purchase reward and promotes
    txns = {t.partner_ref: t for t in Transaction.objects.filter(partner_ref__in=["R1", "R3", "R5", "R7", "R9"])}
    assert [txns[f"R{i}"].tier_count for i in (1, 3, 5, 7)] == [1, 2, 3, 4]
    assert txns["R9"].reward == Decimal("5000.00") and txns["R9"].tier.name == "SILVER"
    assert all(txns[f"R{i}"].reward == 0 for i in (1, 3, 5, 7))


def test_chunk_task_run_twice_records_and_counts_nothing_twice(api, setup, django_capture_on_commit_callbacks):
    body = HEADER + "".join(f"T{i},6281187705{i:02d},,1,200000,LSAJA\n" for i in range(5))
    batch = Batch.objects.get(public_id=post_csv(api, body).json()["id"])
    assert batch.chunks == 1
    # when the chunk is delivered twice (at-least-once), the second time after the first committed
    with django_capture_on_commit_callbacks() as callbacks:
        assert batch_chunk(batch.pk, 0) == "done"
    before = books()
    with django_capture_on_commit_callbacks() as again:
        assert batch_chunk(batch.pk, 0) == "skipped"
    # then nothing was recorded, queued or counted the second time
    assert books() == before
    assert len(callbacks) == 1 and again == []  # the chunk's payouts are queued together, on commit
    queued = queue_depth()
    callbacks[0]()
    assert queue_depth() - queued == 5  # one delivery task per purchase
    batch.refresh_from_db()
    assert (batch.status, batch.processed, batch.accepted, batch.duplicate, batch.failed) == ("DONE", 5, 5, 0, 0)
    assert Transaction.objects.count() == Payout.objects.count() == 5


def test_progress_moves_from_queued_to_running_to_done(api, setup, settings):
    settings.CEZBEK_BATCH_CHUNK_SIZE = 2
    body = HEADER + "".join(f"P{i},6281187706{i:02d},,1,200000,LSAJA\n" for i in range(5))
    document = post_csv(api, body).json()
    batch = Batch.objects.get(public_id=document["id"])
    assert batch.chunks == 3
    assert get(api, f"{PATH}/{batch.public_id}").json()["status"] == "QUEUED"
    batch_chunk(batch.pk, 1)
    progress = get(api, f"{PATH}/{batch.public_id}").json()
    assert (progress["status"], progress["processed"], progress["accepted"], progress["finished_at"]) == ("RUNNING", 2, 2, None)
    pending = [r for r in results(api, batch.public_id) if r["outcome"] == "pending"]
    assert [r["partner_ref"] for r in pending] == ["P0", "P1", "P4"]
    batch_chunk(batch.pk, 0)
    batch_chunk(batch.pk, 2)
    progress = get(api, f"{PATH}/{batch.public_id}").json()
    assert (progress["status"], progress["processed"], progress["accepted"]) == ("DONE", 5, 5)


def test_upload_queues_the_batch_only_when_it_commits(api, setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_csv(api, HEADER + "Q1,628118770510,,1,200000,LSAJA\n")
    assert response.status_code == 202
    assert len(callbacks) == 1  # batch_enqueue: the chunks are split by the worker
    assert Transaction.objects.count() == 0  # nothing is recorded before a worker runs the chunks


def test_the_sweeper_resumes_batches_that_made_no_progress(api, setup, settings, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    settings.CEZBEK_BATCH_STALL_SECONDS = 600
    ids = [post_csv(api, HEADER + f"W{i},62811877051{i},,1,200000,LSAJA\n").json()["id"] for i in range(3)]
    stalled, recent, finished = (Batch.objects.get(public_id=i) for i in ids)
    run_chunks(finished)
    long_ago = timezone.now() - timedelta(seconds=601)
    Batch.objects.filter(pk__in=[stalled.pk, finished.pk]).update(updated_at=long_ago)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert batches.batch_resume_stalled() == 1
    assert len(callbacks) == 1
    stalled.refresh_from_db()
    assert stalled.updated_at > long_ago  # claimed: the next sweep leaves it alone
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert batches.batch_resume_stalled() == 0
    assert callbacks == []


# --- concurrency: PostgreSQL, real transactions ------------------------------------------------------


class LockHolder:
    """Another session holding row locks (as another worker in the middle of its transaction)."""

    def __init__(self, sql: str, params: list):
        self.locked, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(sql, params))
        self.thread.start()
        assert self.locked.wait(10)

    def _hold(self, sql, params):
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(sql, params)
                self.locked.set()
                self.done.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            other.close()

    def release(self):
        self.done.set()
        self.thread.join(10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_held_by_another_worker_is_left_to_it_and_other_chunks_go_on(api, setup, settings):
    settings.CEZBEK_BATCH_CHUNK_SIZE = 1
    body = HEADER + "K1,628118770501,,1,200000,LSAJA\nK2,628118770502,,1,200000,LSAJA\n"
    batch = Batch.objects.get(public_id=post_csv(api, body).json()["id"])
    assert batch.chunks == 2
    # given another worker in the middle of chunk 0 (its row locked)
    holder = LockHolder("SELECT id FROM cashback_batchchunk WHERE batch_id = %s AND number = 0 FOR UPDATE", [batch.pk])
    try:
        # then a second delivery of chunk 0 leaves it alone at once, and chunk 1 does not wait for it
        assert batches.batch_chunk_process(batch_id=batch.pk, number=0) == "busy"
        assert batches.batch_chunk_process(batch_id=batch.pk, number=1) == "done"
    finally:
        holder.release()
    batch.refresh_from_db()
    assert (batch.status, batch.processed) == ("RUNNING", 1)
    # and when that worker gave up (rolled back), its own retry records chunk 0, once
    assert batches.batch_chunk_process(batch_id=batch.pk, number=0) == "done"
    assert batches.batch_chunk_process(batch_id=batch.pk, number=0) == "skipped"
    batch.refresh_from_db()
    assert (batch.status, batch.processed, batch.accepted) == ("DONE", 2, 2)
    assert Transaction.objects.filter(partner_ref__in=["K1", "K2"]).count() == 2




@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_fails_half_way_leaves_nothing_and_runs_again(api, setup):
    # given a customer whose loyalty row another transaction holds locked
    assert api.post("/api/v1/cashbacks", {"partner_ref": "OLD", "msisdn": "628118770599", "quantity": 1, "amount": "1000", "wallet": "LSAJA"}).status_code == 201
    body = HEADER + "H1,628118770501,,1,200000,LSAJA\nH2,628118770599,,1,200000,LSAJA\nH3,628118770502,,1,200000,LSAJA\n"
    batch = Batch.objects.get(public_id=post_csv(api, body).json()["id"])
    before = books()
    holder = LockHolder("SELECT id FROM loyalty_loyaltystate WHERE msisdn = %s FOR UPDATE", ["628118770599"])
    try:
        # when the chunk's second row cannot get the lock (a deadlock or a lost connection would do the same)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        with pytest.raises(OperationalError):
            batches.batch_chunk_process(batch_id=batch.pk, number=0)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
        holder.release()
    # then the first row's purchase was rolled back with the rest: nothing recorded, nothing counted
    assert books() == before
    batch.refresh_from_db()
    assert (batch.status, batch.processed) == ("RUNNING", 0)
    assert set(BatchRow.objects.filter(batch=batch).values_list("outcome", flat=True)) == {"pending"}
    # and when it runs again (the task's retry), every row is recorded once
    assert batches.batch_chunk_process(batch_id=batch.pk, number=0) == "done"
    batch.refresh_from_db()
    assert (batch.status, batch.accepted) == ("DONE", 3)
    assert Transaction.objects.filter(partner_ref__in=["H1", "H2", "H3"]).count() == 3


# --- the file as a whole: refused with 400, nothing created --------------------------------------------


@pytest.mark.parametrize(
    "body, content_type, field, message",
    [
        ("partner_ref,msisdn,quantity,amount\nA,628118770510,1,100\n", "text/csv", "header", "missing: wallet."),
        ("msisdn,quantity,amount,wallet\n628118770510,1,100,LSAJA\n", "text/csv", "header", "missing: partner_ref."),
        (HEADER.replace("email", "wallet"), "text/csv", "header", "repeated: wallet."),
        ("", "text/csv", "body", "The file is empty."),
        ("\n \n", "text/csv", "body", "The file is empty."),
        (HEADER + "\n\n", "text/csv", "body", "The file has a header but no purchase rows."),
        (HEADER + 'A,"628118770510,,1,100,LSAJA\n', "text/csv", "body", "Malformed CSV"),
        (HEADER.encode() + b"A,628118770510,,1,100,\xff\n", "text/csv", "body", "Must be UTF-8 text"),
        (HEADER + "A,628118770510,,1,100,LSA\x00JA\n", "text/csv", "body", "Must be text: a NUL character"),
        (HEADER + "A,628118770510,,1,100,LSAJA\n", "application/json", "content_type", "Must be text/csv; got 'application/json'."),
        (HEADER + "A,628118770510,,1,100,LSAJA\n", "text/csv; charset=latin-1", "content_type", "must be UTF-8"),
        (HEADER + "A,628118770510,,1,100,LSAJA\nB,628118770511,,1,100,LSAJA\nC,628118770512,,1,100,LSAJA\n", "text/csv", "body", "at most 2 rows"),
    ],
    ids=["no-wallet", "no-ref", "repeated", "empty", "blank", "header-only", "bad-quote", "not-utf8", "nul", "json", "latin1", "too-many"],
)
def test_a_file_that_cannot_be_taken_is_refused_and_nothing_is_created(api, setup, settings, body, content_type, field, message):
    settings.CEZBEK_BATCH_MAX_ROWS = 2
    before = books()
    response = post_csv(api, body, content_type=content_type)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert message in error["fields"][field][0] and error["message"].startswith(f"{field}: ")
    assert books() == before


def test_excel_files_with_a_byte_order_mark_and_capitalised_headers_are_read(api, setup):
    body = "\ufeffPartner_Ref, MSISDN ,Quantity,Amount,Wallet,Notes\r\nX1,0811-8770510,1,100000,LSAJA,first\r\nX2,08118770511,1,100000,LSAJA,second\r\n"
    batch = Batch.objects.get(public_id=post_csv(api, body.encode("utf-8")).json()["id"])
    run_chunks(batch)
    rows = results(api, batch.public_id)
    assert [(r["partner_ref"], r["outcome"], r["error_field"]) for r in rows] == [("X1", "failed", "msisdn"), ("X2", "accepted", "")]


def test_a_file_bigger_than_djangos_form_limit_is_taken_and_one_over_ours_is_refused(api, setup, settings):
    # Django refuses request bodies over 2.5 MB by default; these 40,000 rows are about 3 MB.
    body = (HEADER + "".join(f"BIG/{i:06d},62811{i:08d},customer.{i}@example.id,1,100000.00,LSAJA\n" for i in range(40_000))).encode()
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = post_csv(api, body)
    assert response.status_code == 202, response.content
    assert response.json()["total"] == 40_000 and BatchRow.objects.count() == 40_000
    settings.CEZBEK_BATCH_MAX_BYTES = len(body) - 1
    before = books()
    response = post_csv(api, body)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"body": [f"The file may be at most {len(body) - 1} bytes."]}
    assert books() == before


def test_an_inactive_partner_is_refused(api, setup, partner):
    partner[0].__class__.objects.filter(pk=partner[0].pk).update(active=False)
    response = post_csv(api, HEADER + "A,628118770510,,1,100,LSAJA\n")
    assert response.status_code == 401 and Batch.objects.count() == 0


# --- signing and isolation -------------------------------------------------------------------------------


def test_the_signature_covers_the_csv_body(api, setup):
    body = HEADER + "S1,628118770510,,1,100000,LSAJA\n"
    tampered = post_csv(api, body.replace("100000", "900000"), sign_body=body.encode())
    assert tampered.status_code == 401 and tampered.json()["error"] == {"code": "authentication_failed", "message": "Bad signature."}
    assert Batch.objects.count() == 0
    ts = int(time.time())
    assert post_csv(api, body, timestamp=ts).status_code == 202
    replay = post_csv(api, body, timestamp=ts)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed_request"
    assert Batch.objects.count() == 1


def test_a_partner_sees_only_its_own_batches(client, api, setup, make_partner):
    from conftest import SignedClient

    batch_id = post_csv(api, HEADER + "I1,628118770510,,1,100000,LSAJA\n").json()["id"]
    _, credential = make_partner("TOKMED")
    other = SignedClient(client, credential.key_id, credential.secret)
    for path in [f"{PATH}/{batch_id}", f"{PATH}/{batch_id}/results", f"{PATH}/BTNOSUCHBATCH", f"{PATH}/BTNOSUCHBATCH/results"]:
        response = get(other, path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert get(api, f"{PATH}/{batch_id}").status_code == 200


def test_results_answer_a_csv_accept_header_and_errors_stay_json(api, setup):
    batch_id = post_csv(api, HEADER + "C1,628118770510,,1,100000,LSAJA\n").json()["id"]
    path = f"{PATH}/{batch_id}/results"
    response = get(api, path, accept="text/csv")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).decode() == (
        "row,partner_ref,outcome,kezbek_ref,cashback,reward,total,error_code,error_field,error_message\n2,C1,pending,,,,,,,\n"
    )
    missing = f"{PATH}/BTNONE/results"
    response = get(api, missing, accept="text/csv")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"]["code"] == "not_found"


def test_wrong_methods_are_405_in_the_error_shape(api, setup):
    response = get(api, PATH)
    assert response.status_code == 405 and response.json()["error"]["fields"] == {"method": ['Method "GET" not allowed.']}


# --- the chunk plan ------------------------------------------------------------------------------------


def test_chunk_plan_keeps_customers_together_and_chunks_near_the_size():
    keys = ["a", "b", "a", "c", "d", "e", "a", "f", "g", "b"]
    chunk_of, count = batches.chunks_plan(keys=keys, size=3)
    by_key = {}
    for key, chunk in zip(keys, chunk_of):
        by_key.setdefault(key, set()).add(chunk)
    assert all(len(chunks) == 1 for chunks in by_key.values())
    assert count == 4 and chunk_of == [0, 1, 0, 1, 2, 2, 0, 2, 3, 1]


def test_batch_schema_documents_the_csv_body_and_errors(client):
    schema = client.get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/v1/batches"]["post"]
    assert list(create["requestBody"]["content"]) == ["text/csv"]
    assert set(create["responses"]) >= {"202", "400", "401", "429", "500"}
    assert "header" in json.dumps(create["responses"]["400"])
    results_op = schema["paths"]["/api/v1/batches/{batch_id}/results"]["get"]
    assert list(results_op["responses"]["200"]["content"]) == ["text/csv"]
    assert "404" in results_op["responses"] and "404" in schema["paths"]["/api/v1/batches/{batch_id}"]["get"]["responses"]
