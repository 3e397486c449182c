"""The admin dashboard: figures against hand-computed expectations, a bounded number of queries,
well-formed SVG, nothing fetched from another host, staff only."""

import re
import xml.etree.ElementTree as ET
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from cashback.models import CashbackRule, Transaction
from cashback.services import Purchase, transaction_record
from reports.dashboard import JAKARTA, DayFigures, dashboard_figures
from reports.dashboard_charts import Series, bar_chart, format_money, line_chart, nice_ticks
from wallets.models import Payout, PayoutAttempt, Provider

S = Payout.Status
URL = reverse("reports-dashboard")
# Session and user (admin_view), purchases by day, payouts by day, payouts by provider, the review
# queue's rows and its counts: 7, whatever the number of rows. A little room for the admin's context.
MAX_QUERIES = 9


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """No broker here: delivery queued on commit is recorded instead of sent."""
    queued = []
    monkeypatch.setattr("wallets.services.payout_enqueue", lambda *, payout_id, **kw: queued.append(payout_id))
    return queued


@pytest.fixture
def today() -> date:
    return timezone.localtime(timezone.now(), JAKARTA).date()


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A moment in Asia/Jakarta (UTC+7): 00:30 there is 17:30 UTC the day before."""
    return datetime.combine(day, time(hour, minute), tzinfo=JAKARTA)


@pytest.fixture
def providers(db):
    return {
        code: Provider.objects.create(code=code, name=name, kind=kind)
        for code, name, kind in [
            ("LSAJAH2H", "LinkSaja H2H", Provider.Kind.H2H),
            ("MTRANS", "Middletrans", Provider.Kind.AGGREGATOR),
            ("XENIT", "Xenit", Provider.Kind.AGGREGATOR),
        ]
    }


@pytest.fixture
def rule(db):
    """1 % from IDR 100,000 up: a cheaper purchase earns nothing and gets no payout."""
    return CashbackRule.objects.create(
        name="1% from 100k", min_quantity=1, min_amount=Decimal("100000.00"), percentage=Decimal("1.00"),
        valid_from=timezone.now() - timedelta(days=400),
    )


@pytest.fixture
def buy(wallets, ladder, partner, rule, providers):
    """A purchase through the real service, then moved to `when`, its payout put in `status` on a route."""
    lajada, _ = partner
    counter = iter(range(1, 100_000))

    def buy(amount: str, when: datetime, status: str | None = S.SUCCEEDED, *, msisdn: str | None = None,
            provider: str | None = None, fee: str | None = None, dearest_fee: str | None = None) -> Transaction:
        n = next(counter)
        txn, created = transaction_record(
            partner=lajada,
            purchase=Purchase(
                partner_ref=f"INV/{n}", msisdn=msisdn or f"62811877{n:04d}", quantity=1, amount=Decimal(amount), wallet="LSAJA"
            ),
        )
        assert created
        Transaction.objects.filter(pk=txn.pk).update(created_at=when)
        if status is None:
            assert not Payout.objects.filter(transaction=txn).exists()
        else:
            Payout.objects.filter(transaction=txn).update(
                created_at=when, status=status, provider=providers[provider] if provider else None,
                fee=Decimal(fee) if fee else None, dearest_fee=Decimal(dearest_fee) if dearest_fee else None,
            )
        return Transaction.objects.select_related("payout").get(pk=txn.pk)

    return buy


@pytest.fixture
def sample(buy, today):
    """A week of purchases (T = today in Jakarta). Hand-computed: see test_figures_match_hand_computed."""
    t = {}
    # T: two succeeded payouts, one purchase too small for cashback (no payout), one cancelled payout.
    t["p1"] = buy("1000000.00", at(today, 10), provider="LSAJAH2H", fee="500.00", dearest_fee="2500.00")
    t["p2"] = buy("500000.00", at(today, 0, 30), provider="XENIT", fee="1000.00", dearest_fee="2500.00")  # 17:30 UTC the day before
    t["p9"] = buy("50000.00", at(today, 11), status=None)
    t["p10"] = buy("150000.00", at(today, 12), S.CANCELLED)
    # T-1: one failed, one in manual review; a failed payout's fee is not billed.
    t["p3"] = buy("250000.00", at(today - timedelta(days=1), 12), S.FAILED, provider="XENIT", fee="1000.00", dearest_fee="2500.00")
    t["p4"] = buy("200000.00", at(today - timedelta(days=1), 13), S.MANUAL_REVIEW, provider="MTRANS", fee="1500.00", dearest_fee="2500.00")
    # T-2: one customer's five purchases; the fifth earns the BRONZE reward of 5,000.
    for k in range(5):
        t[f"g{k}"] = buy("100000.00", at(today - timedelta(days=2), 9 + k), msisdn="628119990001",
                         provider="LSAJAH2H", fee="500.00", dearest_fee="1500.00")
    # T-3 held by risk control, T-6 (01:00 Jakarta = the day before in UTC) unknown at the provider.
    t["p5"] = buy("300000.00", at(today - timedelta(days=3), 12), S.HELD)
    t["p6"] = buy("400000.00", at(today - timedelta(days=6), 1), S.UNKNOWN, provider="XENIT")
    # Before the 7-day period (23:00 Jakarta the day before it starts): only in the queue and the 30 days.
    t["p7"] = buy("100000.00", at(today - timedelta(days=7), 23), S.MANUAL_REVIEW, provider="XENIT", fee="1000.00", dearest_fee="2000.00")
    return t


def money(text: str) -> Decimal:
    return Decimal(text)


def test_figures_match_hand_computed(sample, today):
    dashboard = dashboard_figures(days=7, now=at(today, 23, 59))

    assert [d.day for d in dashboard.days] == [today - timedelta(days=n) for n in range(6, -1, -1)]
    days = {d.day: d for d in dashboard.days}
    t0 = days[today]
    assert (t0.purchases, t0.purchase_amount, t0.cashback_earned, t0.reward_earned) == (4, money("1700000.00"), money("16500.00"), money("0.00"))
    assert (t0.payouts, t0.succeeded, t0.failed, t0.manual_review) == (3, 2, 0, 0)
    assert (t0.cashback_paid, t0.reward_paid, t0.paid, t0.fees, t0.saving) == (
        money("15000.00"), money("0.00"), money("15000.00"), money("1500.00"), money("3500.00"))
    assert t0.success_rate == Decimal("100.0")

    t1 = days[today - timedelta(days=1)]
    assert (t1.purchases, t1.payouts, t1.succeeded, t1.failed, t1.manual_review) == (2, 2, 0, 1, 1)
    assert (t1.fees, t1.saving, t1.paid) == (money("0.00"), money("0.00"), money("0.00"))
    assert t1.success_rate == Decimal("0.0")

    t2 = days[today - timedelta(days=2)]
    assert (t2.purchases, t2.purchase_amount, t2.cashback_earned, t2.reward_earned) == (5, money("500000.00"), money("5000.00"), money("5000.00"))
    assert (t2.cashback_paid, t2.reward_paid, t2.paid, t2.fees, t2.saving) == (
        money("5000.00"), money("5000.00"), money("10000.00"), money("2500.00"), money("5000.00"))

    t3, t6 = days[today - timedelta(days=3)], days[today - timedelta(days=6)]
    assert (t3.purchases, t3.payouts, t3.success_rate) == (1, 1, None)
    assert (t6.purchases, t6.payouts, t6.success_rate) == (1, 1, None)
    assert days[today - timedelta(days=4)] == DayFigures(day=today - timedelta(days=4))

    total = dashboard.totals
    assert (total.purchases, total.purchase_amount) == (13, money("3350000.00"))
    assert (total.payouts, total.succeeded, total.failed, total.manual_review, total.finished) == (12, 7, 1, 1, 9)
    assert total.success_rate == Decimal("77.8")  # 7 / 9
    assert (total.cashback_paid, total.reward_paid, total.paid) == (money("20000.00"), money("5000.00"), money("25000.00"))
    assert (total.fees, total.saving) == (money("4000.00"), money("8500.00"))
    assert all(isinstance(v, Decimal) for v in (total.paid, total.fees, total.saving, t0.saving))

    by_provider = {p.code: (p.payouts, p.succeeded, p.paid, p.fees, p.saving) for p in dashboard.providers}
    assert by_provider == {
        "LSAJAH2H": (6, 6, money("20000.00"), money("3000.00"), money("7000.00")),
        "MTRANS": (1, 0, money("0.00"), money("0.00"), money("0.00")),
        "XENIT": (3, 1, money("5000.00"), money("1000.00"), money("1500.00")),
        None: (2, 0, money("0.00"), money("0.00"), money("0.00")),
    }
    assert [p.code for p in dashboard.providers] == ["LSAJAH2H", "MTRANS", "XENIT", None]

    # The queue is not bound to the period: oldest first, the one from before the period included.
    assert [p.pk for p in dashboard.queue] == [sample[k].payout.pk for k in ("p7", "p6", "p5", "p4")]
    assert dashboard.queue_counts == {"MANUAL_REVIEW": 2, "UNKNOWN": 1, "HELD": 1}


def test_thirty_days_take_in_what_seven_leave_out(sample, today):
    seven = dashboard_figures(days=7, now=at(today, 23, 59)).totals
    thirty = dashboard_figures(days=30, now=at(today, 23, 59)).totals
    assert (thirty.purchases, thirty.payouts, thirty.manual_review) == (seven.purchases + 1, seven.payouts + 1, seven.manual_review + 1)
    assert thirty.success_rate == Decimal("70.0")  # 7 / 10


def test_a_period_outside_the_choices_is_refused(db):
    with pytest.raises(ValueError, match="days must be one of"):
        dashboard_figures(days=14)


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", password="x")
    client.force_login(user)
    return client


def chart_svgs(html: str) -> dict[str, ET.Element]:
    """The dashboard's charts, each parsed as XML (fails if one is not well-formed)."""
    found = re.findall(r'(<svg id="(chart-[a-z-]+)".*?</svg>)', html, flags=re.S)
    return {chart_id: ET.fromstring(svg) for svg, chart_id in found}


def test_page_shows_the_figures_and_the_queue(staff, sample, today):
    response = staff.get(URL, {"days": "7"})

    assert response.status_code == 200
    html = response.content.decode()
    kpis = {m[0]: re.sub(r"\s+", " ", m[1]).strip() for m in re.findall(r'id="kpi-([a-z-]+)">(.*?)</div>\s*</div>', html, re.S)}
    assert '<div class="value">13</div>' in kpis["purchases"] and "IDR 3,350,000.00 bought" in kpis["purchases"]
    assert "IDR 20,000.00" in kpis["cashback"] and "IDR 5,000.00" in kpis["rewards"]
    assert '<div class="value">7</div>' in kpis["succeeded"] and "of 12 payouts; IDR 25,000.00" in kpis["succeeded"]
    assert "77.8 %" in kpis["success-rate"] and "7 of 9 finished" in kpis["success-rate"]
    assert "IDR 4,000.00" in kpis["fees"] and "IDR 8,500.00" in kpis["saving"]
    assert '<div class="value">4</div>' in kpis["queue"]
    assert '<strong aria-current="page">Last 7 days</strong>' in html

    # The queue links each payout's change page, oldest first.
    links = re.findall(r'href="/admin/wallets/payout/(\d+)/change/"', html)
    assert links == [str(sample[k].payout.pk) for k in ("p7", "p6", "p5", "p4")]
    assert "?status__exact=MANUAL_REVIEW" in html

    charts = chart_svgs(html)
    assert set(charts) == {"chart-volume", "chart-paid", "chart-success", "chart-provider-count", "chart-provider-fees"}
    label = f"{today.day} {today:%b}"
    volume_tips = [t.text for t in charts["chart-volume"].iter("title")]
    assert f"{label}: Purchases 4; Payouts succeeded 2; Failed or manual review 0" in volume_tips
    paid_tips = [t.text for t in charts["chart-paid"].iter("title")]
    assert f"{label}: Cashback IDR 15,000.00; Rewards IDR 0.00" in paid_tips
    fee_tips = [t.text for t in charts["chart-provider-fees"].iter("title")]
    assert "LSAJAH2H: Fees IDR 3,000.00; Saving IDR 7,000.00" in fee_tips
    success_tips = [t.text for t in charts["chart-success"].iter("title")]
    assert f"{label}: Success rate 100.0 % (2 of 2 finished payouts)" in success_tips


def test_every_chart_is_accessible_svg(staff, sample):
    html = staff.get(URL).content.decode()
    for chart_id, svg in chart_svgs(html).items():
        assert svg.get("role") == "img"
        title, desc = svg.find("title"), svg.find("desc")
        assert title is not None and title.text and desc is not None and desc.text, chart_id
        assert svg.get("aria-labelledby") == f"{chart_id}-title {chart_id}-desc"
        assert svg.find("g[@class='y-axis']/text") is not None and svg.find("g[@class='x-axis']/text") is not None
        assert svg.find("g[@class='legend']/text") is not None


def test_nothing_is_fetched_from_another_host(staff, sample):
    html = staff.get(URL).content.decode()
    # Attributes that make a browser fetch or navigate, and CSS url()/@import, pointing off this host.
    external = re.findall(r'''(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//''', html, re.I)
    external += re.findall(r"""(?:url\(\s*["']?|@import\s+["']?)(?:https?:)?//""", html, re.I)
    assert external == []
    assert "<script" not in html.split('id="content-main"', 1)[1]  # the charts need no JavaScript


def test_queries_do_not_grow_with_the_data(staff, buy, today, django_assert_max_num_queries):
    buy("1000000.00", at(today, 10), provider="LSAJAH2H", fee="500.00", dearest_fee="2500.00")
    with django_assert_max_num_queries(MAX_QUERIES) as one:
        assert staff.get(URL).status_code == 200

    statuses = [S.SUCCEEDED, S.FAILED, S.MANUAL_REVIEW, S.UNKNOWN, S.HELD]
    routes = ["LSAJAH2H", "MTRANS", "XENIT", None]
    for n in range(40):
        buy("200000.00", at(today - timedelta(days=n % 30), 12), statuses[n % 5], provider=routes[n % 4],
            fee="700.00", dearest_fee="900.00")
    with django_assert_max_num_queries(MAX_QUERIES) as many:
        response = staff.get(URL, {"days": "30"})
    assert response.status_code == 200
    assert len(many.captured_queries) == len(one.captured_queries)


def test_empty_data_renders(staff):
    response = staff.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert "No data in this period" in html and "No finished payouts in this period" in html
    assert "Nothing is waiting for review." in html and "No payouts in this period." in html
    assert '<div class="value">IDR 0.00</div>' in html and '<div class="value">—</div>' in html  # no success rate
    assert len(chart_svgs(html)) == 5
    assert '<strong aria-current="page">Last 30 days</strong>' in html


def test_an_unknown_period_falls_back_to_thirty_days_and_says_so(staff):
    response = staff.get(URL, {"days": "14"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown period &#x27;14&#x27;: choose 7, 30, 90 days. Showing the last 30 days." in html
    assert '<strong aria-current="page">Last 30 days</strong>' in html


def test_not_for_anonymous_users_or_non_staff(client, django_user_model):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))

    client.force_login(django_user_model.objects.create_user("customer-care", password="x", is_staff=False))
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_admin_index_leads_to_the_dashboard(staff):
    html = staff.get(reverse("admin:index")).content.decode()
    assert f'id="dashboard-link" href="{URL}"' in html
    assert 'id="content-main"' in html  # Django's own index is still there below


def test_payout_attempts_do_not_change_the_figures(staff, buy, today, providers):
    """Attempts are conversations, not money: many attempts on one payout count it once."""
    txn = buy("1000000.00", at(today, 10), provider="XENIT", fee="1000.00", dearest_fee="2500.00")
    for kind in ["SEND", "INQUIRY", "CALLBACK"]:
        PayoutAttempt.objects.create(payout=txn.payout, provider=providers["XENIT"], kind=kind, reference="r", outcome="CREDITED")
    totals = dashboard_figures(days=7).totals
    assert (totals.payouts, totals.succeeded, totals.paid, totals.fees) == (1, 1, money("10000.00"), money("1000.00"))


# --- the chart helpers --------------------------------------------------------------------------


def test_money_is_formatted_from_the_exact_decimal():
    assert format_money(Decimal("1234567.89")) == "IDR 1,234,567.89"
    assert format_money(Decimal("12345678901.10")) == "IDR 12,345,678,901.10"  # beyond float's cents
    assert format_money(0) == "IDR 0.00"


@pytest.mark.parametrize(
    ("maximum", "integers", "expected"),
    [
        (0, False, [0.0, 1.0]),
        (3, True, [0, 1, 2, 3]),
        (17, True, [0, 5, 10, 15, 20]),
        (23500, False, [0, 5000, 10000, 15000, 20000, 25000]),
        (9, False, [0, 2, 4, 6, 8, 10]),
    ],
)
def test_nice_ticks(maximum, integers, expected):
    assert nice_ticks(maximum, integers=integers) == expected


def test_charts_escape_their_labels():
    svg = bar_chart(
        chart_id="c", title="<b>&", description="d", labels=["A<&>"],
        series=[Series("x\"y", [Decimal("1.50")], "#000")], money=True,
    )
    root = ET.fromstring(str(svg))
    assert root.find("title").text == "<b>&"
    assert "A<&>: x\"y IDR 1.50" in [t.text for t in root.iter("title")]
    line = ET.fromstring(str(line_chart(chart_id="l", title="t", description="d", labels=["a", "b", "c"],
                                        series=[Series("r", [Decimal("50.0"), None, Decimal("75.5")], "#000")])))
    assert line.find("g[@class='lines']/path").get("d").count("M") == 2  # a gap breaks the line
