"""The partners changelist: the columns operations scan, search by code, name or email, and the filters."""

import pytest
from django.urls import reverse
from django.utils import timezone

from partners.models import Partner
from partners.services import credential_revoke

CHANGELIST = reverse("admin:partners_partner_changelist")


@pytest.fixture
def partners(make_partner):
    lajada, _ = make_partner("LAJADA", email="ops@lajada.id", webhook_url="https://hooks.lajada.id/cezbek")
    tokmed, tokmed_key = make_partner("TOKMED", email="it@tokmed.co.id", rate_limit_per_minute=1200)
    credential_revoke(partner=tokmed, key_id=tokmed_key.key_id)  # no live key left
    blapak = Partner.objects.create(code="BLAPAK", name="Blapak", active=False)  # never given a key
    return {"LAJADA": lajada, "TOKMED": tokmed, "BLAPAK": blapak}


def codes(admin_client, **query) -> list[str]:
    response = admin_client.get(CHANGELIST, query)
    assert response.status_code == 200, query
    return [p.code for p in response.context["cl"].result_list]


def test_columns_show_keys_webhook_and_rate_limit(admin_client, partners):
    response = admin_client.get(CHANGELIST)
    rows = {p.code: p for p in response.context["cl"].result_list}
    assert {code: p.live_key_count for code, p in rows.items()} == {"BLAPAK": 0, "LAJADA": 1, "TOKMED": 0}
    page = response.content.decode()
    assert "1,200" in page and "6,000 (global)" in page
    headers = [h["text"] for h in response.context["result_headers"]]
    assert [str(h).lower() for h in headers[1:]] == [
        "logo", "code", "name", "active", "rate limit / min", "live keys", "webhook", "created at", "credentials",
    ]


def test_search_by_code_name_or_email(admin_client, partners):
    assert codes(admin_client, q="tokmed.co.id") == ["TOKMED"]
    assert codes(admin_client, q="lajada") == ["LAJADA"]
    assert codes(admin_client, q="Blapak") == ["BLAPAK"]
    assert codes(admin_client, q="nobody") == []


def test_filters(admin_client, partners):
    assert codes(admin_client, webhook="set") == ["LAJADA"]
    assert codes(admin_client, webhook="none") == ["BLAPAK", "TOKMED"]
    assert codes(admin_client, keys="some") == ["LAJADA"]
    assert codes(admin_client, keys="none") == ["BLAPAK", "TOKMED"]
    assert codes(admin_client, rate_limit="own") == ["TOKMED"]
    assert codes(admin_client, rate_limit="global") == ["BLAPAK", "LAJADA"]
    assert codes(admin_client, active__exact="0") == ["BLAPAK"]
    today = timezone.localdate()
    assert codes(admin_client, created_at__year=today.year, created_at__month=today.month) == [
        "BLAPAK",
        "LAJADA",
        "TOKMED",
    ]
