"""The admin as a person uses it, in a real headless Chromium against the live server (PostgreSQL):
log in, the dashboard, a partner, a payout with its attempts, a reconciliation run, then every
changelist and add page the index links, none of which may answer 500. Screenshots are saved under
var/test/screenshots/. Skipped, with the reason, when Debian's chromium is not installed.

To walk another page, add a step function to the test (each takes the page and the data and returns
nothing) — or, for a page the index links, nothing: the crawl at the end visits it anyway.
"""

import csv
import io
import re
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.utils import timezone

from cashback.models import Transaction
from cashback.services import Purchase, transaction_record
from cezbek.testing.browser import browser, page, screenshot  # noqa: F401  (fixtures)
from wallets.models import Payout, PayoutAttempt, Provider

S = Payout.Status
PASSWORD = "walkthrough-only-Pw1"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Delivery is not under test: what the purchases queue on commit is recorded, not sent."""
    queued = []
    monkeypatch.setattr("wallets.services.payout_enqueue", lambda *, payout_id, **kw: queued.append(payout_id))
    return queued


@pytest.fixture
def walk_data(wallets, ladder, partner, global_rule, django_user_model):
    """A superuser, and four purchases of LAJADA's customers whose payouts ended in different states."""
    lajada, _ = partner
    xenit = Provider.objects.create(code="XENIT", name="Xenit", kind=Provider.Kind.AGGREGATOR)
    Provider.objects.create(code="LSAJAH2H", name="LinkSaja H2H", kind=Provider.Kind.H2H)
    user = django_user_model.objects.create_superuser("finance-lead", email="fin@kezbek.example", password=PASSWORD)

    payouts = {}
    for n, (name, status, amount) in enumerate(
        [("paid", S.SUCCEEDED, "1250000.00"), ("review", S.MANUAL_REVIEW, "800000.00"),
         ("unknown", S.UNKNOWN, "600000.00"), ("held", S.HELD, "300000.00")],
        start=1,
    ):
        txn, created = transaction_record(
            partner=lajada,
            purchase=Purchase(partner_ref=f"WALK/{n}", msisdn=f"6281100000{n:02d}", quantity=2, amount=Decimal(amount), wallet="LSAJA"),
        )
        assert created
        reference = f"{txn.kezbek_ref}-XENIT"
        routed = status != S.HELD
        Payout.objects.filter(transaction=txn).update(
            status=status, provider=xenit if routed else None, reference=reference if routed else "",
            provider_ref=f"XN-{n}" if status == S.SUCCEEDED else "",
            fee=Decimal("1000.00") if routed else None, dearest_fee=Decimal("2500.00") if routed else None,
        )
        payouts[name] = Payout.objects.select_related("transaction").get(transaction=txn)

    # Earlier days' succeeded payouts through the direct link, so the charts have a history to show.
    lsaja = Provider.objects.get(code="LSAJAH2H")
    for n, (days_ago, amount) in enumerate([(2, "2000000.00"), (4, "900000.00"), (9, "450000.00")], start=10):
        txn, _ = transaction_record(
            partner=lajada,
            purchase=Purchase(partner_ref=f"WALK/{n}", msisdn=f"6281100000{n:02d}", quantity=1, amount=Decimal(amount), wallet="LSAJA"),
        )
        when = timezone.now() - timedelta(days=days_ago)
        Transaction.objects.filter(pk=txn.pk).update(created_at=when)
        Payout.objects.filter(transaction=txn).update(
            created_at=when, status=S.SUCCEEDED, provider=lsaja, reference=f"{txn.kezbek_ref}-LSAJAH2H",
            fee=Decimal("500.00"), dearest_fee=Decimal("2500.00"),
        )

    paid = payouts["paid"]
    PayoutAttempt.objects.create(payout=paid, provider=xenit, kind="SEND", reference=paid.reference, outcome="PENDING",
                                 provider_ref="XN-1", http_status=200, latency_ms=87, message="top-up pending")
    PayoutAttempt.objects.create(payout=paid, provider=xenit, kind="CALLBACK", reference=paid.reference, outcome="CREDITED",
                                 provider_ref="XN-1", http_status=200, message="callback SUCCESS")
    return {"user": user, "partner": lajada, "payouts": payouts, "xenit": xenit}


def text_of(page, selector: str) -> str:
    return re.sub(r"\s+", " ", page.locator(selector).first.inner_text()).strip()


def log_in(page, data, screenshot):
    response = page.open("/admin/")
    assert response.status == 200 and "/admin/login/" in page.url
    screenshot(page, "01-login")
    page.fill("#id_username", data["user"].username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    assert page.locator("#user-tools").inner_text().upper().count("FINANCE-LEAD") == 1


def see_the_index(page, data, screenshot):
    link = page.locator("#dashboard-link")
    assert link.is_visible()
    assert page.locator("#content-main a[href='/admin/wallets/payout/']").first.is_visible()
    screenshot(page, "02-admin-index")


def read_the_dashboard(page, data, screenshot):
    page.click("#dashboard-link")
    page.wait_for_url(re.compile(r"/admin/dashboard/$"))
    for chart in ["chart-volume", "chart-paid", "chart-success", "chart-provider-count", "chart-provider-fees"]:
        svg = page.locator(f"svg#{chart}")
        assert svg.is_visible(), chart
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, (chart, box)
    volume_bars = page.locator("svg#chart-volume g.bars rect:not([fill=transparent])")
    assert volume_bars.count() >= 2  # today's purchases and succeeded payouts
    # 30 days: the four purchases of today and three earlier ones, all 1 % cashback.
    assert text_of(page, "#kpi-purchases .value") == "7"
    assert text_of(page, "#kpi-cashback .value") == "IDR 46,000.00"  # 12,500 + 20,000 + 9,000 + 4,500
    assert text_of(page, "#kpi-succeeded .value") == "4"
    assert text_of(page, "#kpi-success-rate .value") == "80.0 %"  # 4 succeeded of 5 finished (1 in review)
    assert text_of(page, "#kpi-fees .value") == "IDR 2,500.00"  # 1,000 + 3 × 500
    assert text_of(page, "#kpi-saving .value") == "IDR 7,500.00"  # 1,500 + 3 × 2,000
    assert text_of(page, "#kpi-queue .value") == "3"
    queue = page.locator("#review-queue tbody tr")
    assert queue.count() == 3
    assert [s for s in page.locator("#review-queue tbody .dash-badge").all_inner_texts()] == ["MANUAL_REVIEW", "UNKNOWN", "HELD"]
    screenshot(page, "03-dashboard-30-days")

    page.click("nav.dash-periods >> text=Last 7 days")
    page.wait_for_url(re.compile(r"\?days=7$"))
    assert text_of(page, "nav.dash-periods strong") == "Last 7 days"
    assert text_of(page, "#kpi-purchases .value") == "6"  # the one 9 days ago is out
    screenshot(page, "04-dashboard-7-days")

    # The queue leads to the payout's page.
    page.locator("#review-queue tbody a").first.click()
    page.wait_for_url(re.compile(rf"/admin/wallets/payout/{data['payouts']['review'].pk}/change/$"))
    assert "MANUAL_REVIEW" in page.locator("#content").inner_text()


def open_a_partner(page, data, screenshot):
    page.open("/admin/")
    page.locator("#content-main a[href='/admin/partners/partner/']").first.click()
    page.wait_for_url(re.compile(r"/admin/partners/partner/$"))
    page.locator("#result_list a", has_text="LAJADA").first.click()
    page.wait_for_url(re.compile(rf"/admin/partners/partner/{data['partner'].pk}/change/$"))
    assert page.locator("#id_code").input_value() == "LAJADA"
    screenshot(page, "05-partner")


def open_a_payout_with_its_attempts(page, data, screenshot):
    paid = data["payouts"]["paid"]
    page.open("/admin/wallets/payout/")
    page.fill("#searchbar", paid.transaction.kezbek_ref)
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"\?q="))
    screenshot(page, "06-payouts-search")
    page.locator(f"#result_list tbody a[href*='/admin/wallets/payout/{paid.pk}/change/']").first.click()
    page.wait_for_url(re.compile(rf"/admin/wallets/payout/{paid.pk}/change/"))
    content = page.locator("#content").inner_text()
    assert paid.transaction.kezbek_ref in content and "SUCCEEDED" in content
    attempts = page.locator("fieldset", has_text="attempts (conversations with providers)")
    kinds = attempts.locator("td.field-kind").all_inner_texts()
    outcomes = attempts.locator("td.field-outcome").all_inner_texts()
    assert [k.strip().upper() for k in kinds] == ["SEND", "CALLBACK"]
    assert [o.strip().upper() for o in outcomes] == ["PENDING", "CREDITED"]
    screenshot(page, "07-payout-with-attempts")


def settlement_admin_present() -> bool:
    try:
        model = apps.get_model("reports", "SettlementRun")
    except LookupError:
        return False
    return admin.site.is_registered(model)


def import_a_settlement_run(page, data, screenshot):
    """Finance uploads Xenit's settlement file on the run's add page and lands on the run's page."""
    if not settlement_admin_present():
        pytest.skip("reports.SettlementRun is not in the admin yet: no reconciliation run page to walk")
    paid = data["payouts"]["paid"]
    today = timezone.now().astimezone(UTC)
    rows = [
        ["provider_ref", "client_ref", "wallet", "msisdn", "amount", "fee", "status", "settled_at"],
        ["XN-1", paid.reference, "LSAJA", paid.msisdn, f"{paid.amount}", "1000.00", "SUCCESS", today.isoformat()],
        ["XN-999", "KZSOMETHINGWENEVERSENT-XENIT", "LSAJA", "628119999999", "5000.00", "1000.00", "SUCCESS", today.isoformat()],
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)

    page.open("/admin/")
    page.locator("#content-main a[href='/admin/reports/settlementrun/']").first.click()
    page.wait_for_url(re.compile(r"/admin/reports/settlementrun/$"))
    screenshot(page, "08-settlement-runs")
    page.open("/admin/reports/settlementrun/add/")
    page.select_option("select[name=provider]", "XENIT")
    page.set_input_files(
        "input[name=file]", {"name": f"xenit-{today:%Y-%m-%d}.csv", "mimeType": "text/csv", "buffer": buffer.getvalue().encode()}
    )
    page.locator("#content-main [type=submit]").first.click()
    page.wait_for_url(re.compile(r"/admin/reports/settlementrun/\d+/change/$"))
    content = page.locator("#content").inner_text()
    assert "MATCHED" in content and "UNKNOWN_TO_CEZBEK" in content, content[:2000]
    screenshot(page, "09-settlement-run")


def crawl_the_index(page, data, screenshot):
    """Every changelist and add page linked from the index, and the first object of each list."""
    page.open("/admin/")
    links = sorted({href for href in page.locator("#content a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
                    if href.startswith("/admin/")})
    assert any(href.endswith("/add/") for href in links) and "/admin/dashboard/" in links
    failures, visited = [], []
    for href in links:
        response = page.open(href)
        visited.append((href, response.status))
        if response.status >= 500:
            failures.append((href, response.status))
            screenshot(page, f"500{href}")
            continue
        first = page.locator("#result_list tbody th a, #result_list tbody td a").first
        if href.endswith("/add/") or not first.count():
            continue
        target = first.get_attribute("href")
        response = page.open(target)
        visited.append((target, response.status))
        if response.status >= 500:
            failures.append((target, response.status))
    assert failures == [], failures
    assert len(visited) >= len(links)


def test_the_admin_walkthrough(page, walk_data, screenshot):
    steps = [log_in, see_the_index, read_the_dashboard, open_a_partner, open_a_payout_with_its_attempts]
    for step in steps:
        step(page, walk_data, screenshot)
    if settlement_admin_present():
        import_a_settlement_run(page, walk_data, screenshot)
    crawl_the_index(page, walk_data, screenshot)

    assert page.foreign_requests == [], "the admin must work offline"
    assert page.console_errors == []


def test_the_login_page_refuses_a_wrong_password(page, walk_data, screenshot):
    page.open("/admin/login/")
    page.fill("#id_username", walk_data["user"].username)
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")
    assert page.locator(".errornote").is_visible()
    assert "/admin/login/" in page.url
    assert page.open("/admin/dashboard/").url.split("?")[0].endswith("/admin/login/")
