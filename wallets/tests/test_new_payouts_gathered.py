"""New payouts queued by purchases: gathered in the web process and queued several to a message
(`NEW_PAYOUTS`), each with its own request id; the batch task reads both message shapes.
The whole way through a real broker and worker: cezbek/tests/test_logging.py."""

from types import SimpleNamespace

import pytest

from cezbek import logs
from cezbek.celery import app
from cezbek.gathering import Gatherer
from wallets import services, tasks


@pytest.fixture
def gathered(monkeypatch):
    """A NEW_PAYOUTS whose groups are recorded instead of published."""
    groups = []
    gatherer = Gatherer(groups.append, wait=0.05, most=16, name="test-new-payouts")
    monkeypatch.setattr(services, "NEW_PAYOUTS", gatherer)
    return gatherer, groups


@pytest.fixture
def published(monkeypatch):
    """What payouts_deliver.apply_async was called with, when it was."""
    calls = []
    monkeypatch.setattr(tasks.payouts_deliver, "apply_async", lambda args, kwargs, **options: calls.append((args, kwargs)))
    return calls


def _hint(n):
    return {"wallet_id": 1, "amount": f"{n}000.00", "msisdn": f"62811000000{n}", "kezbek_ref": f"KZ{n}"}


def test_new_payouts_are_gathered_with_their_request_ids(settings, gathered, published):
    settings.CEZBEK_PAYOUT_GATHER_SECONDS = 0.05
    gatherer, groups = gathered
    for n, rid in ((1, "req-a"), (2, "req-b"), (3, None)):
        token = logs.request_id.set(rid)
        try:
            services.payout_enqueue(payout_id=n, hint=_hint(n))
        finally:
            logs.request_id.reset(token)
    gatherer.flush()  # what the background thread would send within 0.05 s

    assert [item for group in groups for item in group] == [(1, _hint(1), "req-a"), (2, _hint(2), "req-b"), (3, _hint(3), None)]
    assert published == []  # nothing queued from the requests themselves


def test_without_gathering_or_when_eager_each_payout_is_queued_in_its_request(settings, monkeypatch, gathered, published):
    gatherer, groups = gathered
    settings.CEZBEK_PAYOUT_GATHER_SECONDS = 0
    services.payout_enqueue(payout_id=1, hint=_hint(1))
    settings.CEZBEK_PAYOUT_GATHER_SECONDS = 0.05
    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", True)  # tests and demos that run tasks inline
    services.payout_enqueue(payout_id=2, hint=_hint(2))
    gatherer.flush()

    assert published == [((1,), {"hint": _hint(1)}), ((2,), {"hint": _hint(2)})]
    assert groups == []


def test_a_gathered_message_names_only_payout_ids_in_its_log_repr(monkeypatch):
    options = {}
    monkeypatch.setattr(tasks.payouts_deliver, "apply_async", lambda args, kwargs, **kw: options.update(kw, args=args, kwargs=kwargs))
    services.payouts_gathered_enqueue([(1, _hint(1), "req-a"), (2, _hint(2), None)])
    assert options["args"] == () and options["kwargs"] == {"payouts": [(1, _hint(1), "req-a"), (2, _hint(2), None)]}
    assert options["kwargsrepr"] == "{'payouts': [1, 2]}"  # no MSISDN in the worker's log lines


def test_the_batch_task_reads_gathered_and_single_messages(monkeypatch):
    seen = []

    def deliver(*, items, scope):
        for payout_id, _ in items:
            with scope(payout_id):
                seen.append((payout_id, logs.request_id.get(), logs.current_task.get()))
        return {"SUCCEEDED": len(items)}

    monkeypatch.setattr(services, "payouts_deliver", deliver)
    requests = [
        # as a web process gathers them (JSON turns the tuples into lists)
        SimpleNamespace(id="m1", args=[], kwargs={"payouts": [[5, _hint(5), "req-a"], [6, _hint(6), None]]}, request_dict={}),
        # as payout_enqueue without gathering, and batch uploads, queue them: one payout, its request id in a header
        SimpleNamespace(id="m2", args=[7], kwargs={"hint": _hint(7)}, request_dict={"cezbek_request_id": "req-c"}),
    ]
    assert tasks.payouts_deliver.run(requests) == {"SUCCEEDED": 3}
    assert seen == [
        (5, "req-a", ("m1", "wallets.payouts_deliver")),
        (6, None, ("m1", "wallets.payouts_deliver")),
        (7, "req-c", ("m2", "wallets.payouts_deliver")),
    ]
