"""The transaction and payout changelists as staff use them over large books: a fixed number of
queries whatever the row count, exact search by what staff have in hand, filters that answer."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test.utils import CaptureQueriesContext
from django.db import connection
from django.urls import reverse

from cashback.admin import CappedCountPaginator
from cashback.models import Transaction
from cashback.tests.bulk import STATUS_CYCLE, books_create, kezbek_ref_of, msisdn_of
from wallets.models import Payout, Provider

TRANSACTIONS = reverse("admin:cashback_transaction_changelist")
PAYOUTS = reverse("admin:wallets_payout_changelist")
JAKARTA = ZoneInfo("Asia/Jakarta")
SINCE = datetime(2026, 3, 1, tzinfo=JAKARTA)  # row i was created SINCE + i minutes
# Session, user, the count (capped), the page of rows with everything its columns show (one query:
# list_select_related), the partner and wallet filters' choices, the date hierarchy's range and its
# years: 8 for transactions. Payouts: the provider and wallet filters instead of partner and wallet: 8.
MAX_QUERIES = 8


@pytest.fixture
def books(db, make_partner, wallets, ladder):
    """Partners LAJADA and TOKMED, providers MTRANS and XENIT, and a `grow(n)` that brings the books to n
    transactions (with payouts, cashback/tests/bulk.py)."""
    partners = [make_partner("LAJADA")[0], make_partner("TOKMED")[0]]
    providers = [
        Provider.objects.create(code="MTRANS", name="Middletrans", kind=Provider.Kind.AGGREGATOR),
        Provider.objects.create(code="XENIT", name="Xenit", kind=Provider.Kind.AGGREGATOR),
    ]
    state = {"count": 0, "ids": {}}

    def grow(n: int) -> dict:
        state["ids"] |= books_create(
            start=state["count"], count=n - state["count"], partners=partners, wallets=list(wallets.values()),
            tier=ladder["BRONZE"], since=SINCE, providers=providers,
        )
        state["count"] = n
        return state["ids"]

    grow.partners, grow.providers, grow.wallets = partners, providers, wallets
    return grow


def queries_for(client, url, params=None) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(captured), response


def listed_refs(response) -> list[str]:
    return [row.kezbek_ref for row in response.context["cl"].result_list]


# --- no N+1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [TRANSACTIONS, PAYOUTS], ids=["transactions", "payouts"])
def test_changelist_queries_are_the_same_for_10_and_10000_rows(admin_client, books, url, django_assert_max_num_queries):
    books(10)
    with django_assert_max_num_queries(MAX_QUERIES):
        small, response = queries_for(admin_client, url)
    assert len(response.context["cl"].result_list) == (10 if url == TRANSACTIONS else 9)  # i = 0 earned nothing

    ids = books(10_000)
    assert Transaction.objects.count() == 10_000 and Payout.objects.count() == 9_000
    with django_assert_max_num_queries(MAX_QUERIES):
        large, response = queries_for(admin_client, url)
    assert large == small
    page = response.context["cl"].result_list
    assert len(page) == 100
    newest = Transaction.objects.get(pk=ids[9_999])
    first = page[0] if url == TRANSACTIONS else page[0].transaction
    assert first == newest
    html = response.content.decode()
    assert newest.kezbek_ref in html and "Export CSV" in html  # superuser: may export
    # 10,000 rows: counted exactly, no "counting stops" note
    assert response.context["cl"].result_count == (10_000 if url == TRANSACTIONS else 9_000)
    assert "counting stops there" not in html


def test_transaction_changelist_shows_what_staff_scan_for(admin_client, books):
    ids = books(12)
    response = admin_client.get(TRANSACTIONS)
    html = response.content.decode()
    row = Transaction.objects.select_related("payout").get(pk=ids[11])
    # kezbek_ref 11, INV/11, TOKMED, its MSISDN, the payout's state; money as the admin shows it
    for text in [kezbek_ref_of(11), "INV/11", "TOKMED", msisdn_of(11), row.payout.status, "10011.00", "100.11"]:
        assert text in html, text
    assert response.context["cl"].list_display == [  # no actions on the books: no checkbox column
        "kezbek_ref", "partner_ref", "partner_code", "msisdn", "wallet", "amount", "cashback", "reward", "total",
        "tier", "payout_status", "created_at",
    ]


def test_counts_stop_at_the_cap_and_the_page_says_so(admin_client, books, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 500)
    books(600)
    response = admin_client.get(TRANSACTIONS)
    cl = response.context["cl"]
    assert cl.result_count == 500 and cl.paginator.num_pages == 5
    assert "More than 500 rows: counting stops there" in response.content.decode()
    filtered = admin_client.get(TRANSACTIONS, {"wallet__id__exact": books.wallets["GPAID"].pk})
    assert filtered.context["cl"].result_count == 200  # under the cap: exact
    assert "counting stops there" not in filtered.content.decode()


@pytest.mark.parametrize("cap, expected_months", [(10_000, ["January 2026", "March 2026"]), (15, ["January 2026", "February 2026", "March 2026"])])
def test_date_hierarchy_is_exact_under_the_cap_and_from_the_bounds_over_it(
    admin_client, books, ladder, monkeypatch, cap, expected_months
):
    """Under the cap the months are those with rows; over it, every month between the first and the last
    row, without reading every row (no DISTINCT)."""
    monkeypatch.setattr(CappedCountPaginator, "cap", cap)
    common = {"partners": books.partners, "wallets": list(books.wallets.values()), "tier": ladder["BRONZE"]}
    books_create(start=0, count=10, since=datetime(2026, 1, 10, tzinfo=JAKARTA), step=timedelta(hours=1), **common)
    books_create(start=10, count=10, since=datetime(2026, 3, 10, tzinfo=JAKARTA), step=timedelta(hours=1), **common)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(TRANSACTIONS, {"created_at__year": 2026})
    html = response.content.decode().split('<nav class="toplinks">')[1].split("</nav>")[0]
    assert [m for m in ["January 2026", "February 2026", "March 2026"] if m in html] == expected_months
    assert any("DISTINCT" in q["sql"] for q in captured.captured_queries) == (cap == 10_000)
    assert response.context["cl"].result_count == min(20, cap)


# --- search -------------------------------------------------------------------------------------


def test_transaction_search_by_ref_msisdn_and_partner_code(admin_client, books):
    ids = books(40)
    txn7 = Transaction.objects.get(pk=ids[7])
    cases = [
        (kezbek_ref_of(7), [7]),
        (kezbek_ref_of(7).lower(), [7]),  # refs are pasted in any case
        (f"{kezbek_ref_of(7)}-MTRANS", [7]),  # a provider's client reference names the kezbek ref
        ("INV/7", [7]),  # the partner's own reference, exactly
        ("inv/7", []),  # ... which is case-sensitive, as the partner sent it
        ("INV/", []),  # no substring search
        ("0" + msisdn_of(7)[2:], [7]),  # MSISDN as the customer says it
        ("+" + msisdn_of(7), [7]),
        (msisdn_of(7), [7]),
        ("tokmed", sorted(range(1, 40, 2), reverse=True)),  # a partner code: its rows
        (f"TOKMED {msisdn_of(7)}", [7]),  # several terms narrow
        (f"LAJADA {msisdn_of(7)}", []),
        ('"INV/7"', [7]),
        ("nothing-like-this", []),
    ]
    for term, expected in cases:
        response = admin_client.get(TRANSACTIONS, {"q": term})
        assert response.status_code == 200, term
        assert listed_refs(response) == [kezbek_ref_of(i) for i in expected], term
    assert txn7.partner.code == "TOKMED"


def test_payout_search_by_ref_msisdn_and_partner_code(admin_client, books):
    ids = books(40)
    payout7 = Payout.objects.get(transaction_id=ids[7])
    for term, expected in [
        (kezbek_ref_of(7), [payout7.pk]),
        (payout7.reference, [payout7.pk]),  # KZ…-XENIT
        ("INV/7", [payout7.pk]),
        ("08" + msisdn_of(7)[3:], [payout7.pk]),
        ("INV/10", []),  # earned nothing: no payout
        ("lajada", list(Payout.objects.filter(transaction__partner__code="LAJADA").order_by("-id").values_list("pk", flat=True))),
        ("INV/7 LAJADA", []),
        ("nothing-like-this", []),
    ]:
        response = admin_client.get(PAYOUTS, {"q": term})
        assert response.status_code == 200, term
        assert [p.pk for p in response.context["cl"].result_list] == expected, term


# --- filters ------------------------------------------------------------------------------------


def test_transaction_filters(admin_client, books):
    ids = books(3000)
    gpaid, tokmed = books.wallets["GPAID"], books.partners[1]
    wallet_codes = list(books.wallets)  # LSAJA, GPAID, JOSVO: row i has wallet i % 3

    def expect(predicate) -> set[int]:
        return {ids[i] for i in range(3000) if predicate(i)}

    for params, expected in [
        ({"wallet__id__exact": gpaid.pk}, expect(lambda i: wallet_codes[i % 3] == "GPAID")),
        ({"partner__id__exact": tokmed.pk}, expect(lambda i: i % 2 == 1)),
        ({"payout_status": "FAILED"}, expect(lambda i: i % 10 != 0 and STATUS_CYCLE[i % 5] == "FAILED")),
        ({"payout_status": "NONE"}, expect(lambda i: i % 10 == 0)),
        (
            {"payout_status": "HELD", "partner__id__exact": tokmed.pk, "wallet__id__exact": gpaid.pk},
            expect(lambda i: i % 5 == 4 and i % 2 == 1 and i % 3 == 1),
        ),
        # the date hierarchy: 2 March in Jakarta is minutes 1440 … 2879 after 1 March 00:00
        ({"created_at__year": 2026, "created_at__month": 3, "created_at__day": 2}, expect(lambda i: 1440 <= i < 2880)),
    ]:
        response = admin_client.get(TRANSACTIONS, params)
        assert response.status_code == 200, params
        cl = response.context["cl"]
        assert cl.result_count == len(expected), params
        assert set(cl.queryset.values_list("pk", flat=True)) == expected, params
    assert admin_client.get(TRANSACTIONS, {"payout_status": "PAID"}).url.endswith("?e=1")


def test_payout_changelist_columns_and_saving(admin_client, books):
    books(3)
    response = admin_client.get(PAYOUTS)
    cl = response.context["cl"]
    assert cl.list_display[1:] == [
        "id", "kezbek_ref", "msisdn", "wallet", "amount", "status_badge", "provider", "fee", "saving", "checks",
        "flag_list", "age", "created_at",
    ]
    assert "500.00" in response.content.decode()  # saving = dearest 1,500.00 − fee 1,000.00


# --- read-only books --------------------------------------------------------------------------------


def test_transactions_cannot_be_added_changed_or_deleted(admin_client, books):
    ids = books(2)
    change = reverse("admin:cashback_transaction_change", args=[ids[1]])
    page = admin_client.get(change)
    assert page.status_code == 200 and 'name="amount"' not in page.content.decode()
    assert admin_client.post(change, {"amount": "1.00", "total": "1.00"}).status_code == 403
    assert admin_client.get(reverse("admin:cashback_transaction_add")).status_code == 403
    assert admin_client.post(reverse("admin:cashback_transaction_delete", args=[ids[1]]), {"post": "yes"}).status_code == 403
    assert Transaction.objects.get(pk=ids[1]).amount == 10_001
