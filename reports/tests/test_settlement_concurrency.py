"""Concurrent imports on PostgreSQL, with real threads: a payout found paid is settled once, a file is imported once."""

import threading

import pytest
from django.db import connection

from cezbek.errors import Conflict
from reports.models import SettlementLine, SettlementRun
from reports.services import settlement_import
from wallets.models import Payout

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

S = Payout.Status
HEADER = "provider_ref,client_ref,wallet,msisdn,amount,fee,status,settled_at\n"


@pytest.fixture
def unknown(buy, routes, monkeypatch):
    monkeypatch.setattr("wallets.services.payout_enqueue", lambda **kw: None)  # no broker: nothing is delivered
    payout = buy("LSAJA", "15000.00")
    Payout.objects.filter(pk=payout.pk).update(status=S.UNKNOWN, provider=routes["MTRANS"], reference=f"{payout.transaction.kezbek_ref}-MTRANS", lease=1)
    return Payout.objects.get(pk=payout.pk)


def race(*calls) -> list:
    """Runs the calls at the same moment in threads of their own; returns each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as error:  # noqa: BLE001 (the test looks at what each thread got)
            results[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_files_finding_one_payout_paid_settle_it_once(unknown):
    line = f"MTR1,{unknown.reference},LSAJA,{unknown.msisdn},15000.00,1500.00,SUCCESS,2026-05-01T09:00:00.000Z\n"
    first = (HEADER + line).encode()
    reissued = (HEADER + line + "\n").encode()  # other bytes, the same credit

    results = race(
        lambda: settlement_import(provider_code="MTRANS", content=first, file_name="mtrans-2026-05-01.csv"),
        lambda: settlement_import(provider_code="MTRANS", content=reissued, file_name="mtrans-2026-05-01.csv"),
    )

    assert all(isinstance(r, SettlementRun) for r in results), results
    unknown.refresh_from_db()
    assert unknown.status == S.SUCCEEDED
    assert list(unknown.events.filter(to_status=S.SUCCEEDED).values_list("from_status", flat=True)) == [S.UNKNOWN]
    lines = SettlementLine.objects.filter(payout=unknown).order_by("run_id")
    # whichever run locked the payout first settled it; the other found it SUCCEEDED and MATCHED it
    assert sorted((line.outcome, line.payout_settled) for line in lines) == [("MATCHED", False), ("UNKNOWN_TO_CEZBEK", True)]


def test_the_same_file_imported_twice_at_once_makes_one_run(unknown, media_root):
    content = (HEADER + f"MTR1,{unknown.reference},LSAJA,{unknown.msisdn},15000.00,1500.00,SUCCESS,2026-05-01T09:00:00.000Z\n").encode()

    results = race(*[lambda: settlement_import(provider_code="MTRANS", content=content, file_name="mtrans-2026-05-01.csv")] * 2)

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "SettlementRun"], results
    assert "already imported as settlement run" in next(r for r in results if isinstance(r, Conflict)).message
    assert SettlementRun.objects.count() == 1 and SettlementLine.objects.count() == 1
    assert Payout.objects.get(pk=unknown.pk).events.filter(to_status=S.SUCCEEDED).count() == 1
    # the loser's copy of the file was removed: one stored file, the winner's
    run = SettlementRun.objects.get()
    assert sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file()) == [run.file.name]
