"""Reconciliation end to end: purchases through the signed API, payouts delivered by a real Celery worker
to the sandbox over HTTP, then each provider's settlement file, as the running sandbox serves it from
its own books, imported with `import_settlement --json`."""

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from reports.models import SettlementLine, SettlementRun
from reports.tests.conftest import book_credit, settlement_file
from wallets.models import Payout
from wallets.tests.conftest import wait_terminal

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

S = Payout.Status
PROVIDERS = ["GOPAIDH2H", "JOSVOH2H", "LSAJAH2H", "MTRANS", "XENIT"]


@pytest.fixture
def buy(api, ladder):
    from cashback.models import CashbackRule

    CashbackRule.objects.create(name="all of it", percentage=Decimal("100"), valid_from=timezone.now() - timedelta(days=1))
    counter = iter(range(1, 10**6))

    def post(wallet: str, amount: str) -> int:
        n = next(counter)
        body = {"partner_ref": f"SETTLE-{n}", "msisdn": f"62814{n:08d}", "quantity": 1, "amount": amount, "wallet": wallet}
        response = api.post("/api/v1/cashbacks", body)
        assert response.status_code == 201, response.content
        return Payout.objects.get(transaction__kezbek_ref=response.json()["kezbek_ref"]).pk

    return post


def route_taken(payout_ids: list[int], *, cheapest: list[str]) -> list[str]:
    """The provider that paid each payout, checked against its cheapest route.

    A payout may leave its cheapest route only after an attempt there that moved nothing
    because the provider could not be reached (UNAVAILABLE or BREAKER_OPEN).
    """
    taken = []
    for pk, code in zip(payout_ids, cheapest, strict=True):
        payout = Payout.objects.select_related("provider").get(pk=pk)
        attempts = list(payout.attempt_rows.order_by("id").values_list("provider__code", "outcome", "message"))
        if payout.provider.code != code:
            skipped = [a for a in attempts if a[0] == code]
            assert skipped and all(outcome in {"UNAVAILABLE", "BREAKER_OPEN"} for _, outcome, _ in skipped), (
                f"payout {pk} paid by {payout.provider.code}, not its cheapest route {code}: attempts {attempts}"
            )
        taken.append(payout.provider.code)
    return taken


def test_the_running_sandboxs_settlement_files_reconcile_real_deliveries(sandbox, worker, routes, breakers_closed, buy, tmp_path):
    # GoPaid times out after crediting: it has no inquiry, so the payout waits for a person
    sandbox.faults({"GOPAIDH2H": {"unknown_rate": 1, "unknown_credit_rate": 1, "unknown_drop_rate": 0}})
    review = buy("GPAID", "12000.00")
    wait_terminal([review], timeout=30)
    sandbox.faults({"GOPAIDH2H": {"unknown_rate": 0}})
    delivered = [buy("LSAJA", "10000.00"), buy("LSAJA", "20000.00"), buy("JOSVO", "200000.00"), buy("GPAID", "8000.00")]
    wait_terminal(delivered, timeout=60)
    statuses = dict(Payout.objects.filter(pk__in=[review, *delivered]).values_list("pk", "status"))
    assert statuses == {review: S.MANUAL_REVIEW, **dict.fromkeys(delivered, S.SUCCEEDED)}
    # Each went by its cheapest route (MTRANS, MTRANS, XENIT, GOPAIDH2H), or failed over from it
    # only after that route was found unavailable right then (a loaded machine can make a
    # connect time out): the settlement files must then show the route really taken.
    paid_by = route_taken(delivered, cheapest=["MTRANS", "MTRANS", "XENIT", "GOPAIDH2H"])
    # and XENIT credited someone we never asked it to
    book_credit(sandbox, provider="XENIT", client_ref="KZNOBODYOFOURS-XENIT", wallet="JOSVO", msisdn="628140000999", amount=7000.00)
    days = sorted({credit["at"][:10] for credit in sandbox.ledger()})

    counts = {}
    for code in PROVIDERS:
        for day in days:
            name, content = settlement_file(sandbox, code, day)
            path = tmp_path / name
            path.write_bytes(content)
            out = StringIO()
            call_command("import_settlement", code, str(path), "--json", stdout=out)
            document = json.loads(out.getvalue())
            assert set(document) == {"run", "counts"}
            for outcome, n in document["counts"].items():
                counts[code, outcome] = counts.get((code, outcome), 0) + n

    found = {key: n for key, n in counts.items() if n}
    expected = {("XENIT", "UNKNOWN_TO_CEZBEK"): 1, ("GOPAIDH2H", "UNKNOWN_TO_CEZBEK"): 1}
    for code in paid_by:
        expected[code, "MATCHED"] = expected.get((code, "MATCHED"), 0) + 1
    assert found == expected
    # the GoPaid payout in review was found paid: SUCCEEDED, the run its evidence
    payout = Payout.objects.get(pk=review)
    line = SettlementLine.objects.get(payout=payout)
    assert (payout.status, line.outcome, line.payout_settled) == (S.SUCCEEDED, "UNKNOWN_TO_CEZBEK", True)
    assert f"settlement run {line.run_id}" in payout.events.order_by("id").last().note
    # every credit in the provider's books is a line of exactly one run
    assert SettlementLine.objects.exclude(line_number=None).count() == len(sandbox.ledger())
    assert SettlementRun.objects.count() == len(PROVIDERS) * len(days)
