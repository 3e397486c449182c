"""POST/GET /api/v1/cashbacks as a partner sees them (API.md, DOMAIN.md §1–3)."""

import json
from decimal import Decimal

import pytest

from cashback.models import CashbackRule, Transaction
from loyalty.models import JourneyEntry, LoyaltyState
from wallets.models import Payout, PayoutEvent

PATH = "/api/v1/cashbacks"


def purchase(**overrides):
    body = {"partner_ref": "INV/001/002", "msisdn": "628118770510", "email": "a@b.id", "quantity": 2, "amount": "750000.00", "wallet": "LSAJA"}
    body.update(overrides)
    return body


def counts():
    return (Transaction.objects.count(), Payout.objects.count(), LoyaltyState.objects.count(), JourneyEntry.objects.count(), PayoutEvent.objects.count())


@pytest.fixture
def setup(wallets, ladder, global_rule):
    return global_rule


def test_new_purchase_gets_cashback_tier_and_pending_payout(api, setup):
    # given a 1% global rule; when a partner posts a purchase
    response = api.post(PATH, purchase())
    # then 201 with the documented body
    assert response.status_code == 201
    body = response.json()
    assert body["kezbek_ref"].startswith("KZ") and len(body["kezbek_ref"]) == 26
    assert {k: body[k] for k in ["partner_ref", "msisdn", "wallet", "quantity", "amount", "cashback", "reward", "total"]} == {
        "partner_ref": "INV/001/002", "msisdn": "628118770510", "wallet": "LSAJA", "quantity": 2,
        "amount": "750000.00", "cashback": "7500.00", "reward": "0.00", "total": "7500.00",
    }
    assert body["tier"] == {"name": "BRONZE", "count": 1, "expires_at": None}
    assert body["payout"] == {"status": "PENDING", "provider": None, "flags": []}
    assert body["created_at"].endswith("+07:00")
    payout = Payout.objects.get()
    assert payout.amount == Decimal("7500.00") and payout.status == "PENDING" and payout.msisdn == "628118770510"
    assert list(payout.events.values_list("from_status", "to_status")) == [("", "PENDING")]


def test_payout_task_is_queued_on_commit(api, setup, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("wallets.services.payout_enqueue", lambda *, payout_id, hint: queued.append((payout_id, hint)))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(PATH, purchase())
    assert response.status_code == 201
    assert len(callbacks) == 1
    payout = Payout.objects.select_related("transaction").get()
    # the hint lets the worker claim without reading the payout first: it must be the payout's own
    assert queued == [
        (
            payout.pk,
            {"wallet_id": payout.wallet_id, "amount": str(payout.amount), "msisdn": payout.msisdn, "kezbek_ref": payout.transaction.kezbek_ref},
        )
    ]


def test_repeat_returns_stored_result_and_creates_nothing(api, setup):
    first = api.post(PATH, purchase())
    before = counts()
    again = api.post(PATH, purchase(msisdn="+628118770510", amount=750000, email="A@B.id"))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert counts() == before


def test_same_ref_different_content_is_a_conflict(api, setup):
    api.post(PATH, purchase())
    before = counts()
    response = api.post(PATH, purchase(amount="750001.00"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert counts() == before


def test_zero_total_has_no_payout_but_counts_for_loyalty(api, wallets, ladder):
    # no cashback rule at all
    response = api.post(PATH, purchase())
    assert response.status_code == 201
    body = response.json()
    assert body["cashback"] == "0.00" and body["total"] == "0.00" and body["payout"] is None
    assert body["tier"]["count"] == 1
    assert Payout.objects.count() == 0
    assert LoyaltyState.objects.get().count == 1


def test_fifth_purchase_rewards_and_promotes(api, setup):
    for n in range(1, 6):
        body = api.post(PATH, purchase(partner_ref=f"P{n}", amount="100.00")).json()
    assert body["reward"] == "5000.00"
    assert body["cashback"] == "1.00"
    assert body["total"] == "5001.00"
    assert body["tier"]["name"] == "SILVER" and body["tier"]["count"] == 0
    assert body["tier"]["expires_at"] is not None
    assert Payout.objects.get(transaction__partner_ref="P5").amount == Decimal("5001.00")


def test_a_reward_plus_cashback_that_binary_floats_cannot_add_is_stored(api, setup):
    # 512.19 + 5000.00 is not the float nearest 5512.19: SQLite (`make run`) keeps decimals as floats
    for n in range(1, 6):
        response = api.post(PATH, purchase(partner_ref=f"F{n}", amount="51219.00"))
        assert response.status_code == 201, response.content
    assert (response.json()["cashback"], response.json()["reward"], response.json()["total"]) == ("512.19", "5000.00", "5512.19")
    assert Transaction.objects.get(partner_ref="F5").total == Decimal("5512.19")


def test_detail_shows_current_payout_state(api, setup):
    ref = api.post(PATH, purchase()).json()["kezbek_ref"]
    Payout.objects.update(status="SUCCEEDED")
    response = api.get(f"{PATH}/{ref}")
    assert response.status_code == 200
    assert response.json()["payout"]["status"] == "SUCCEEDED"
    assert response.json()["kezbek_ref"] == ref


def test_detail_unknown_is_404_in_error_shape(api, setup):
    response = api.get(f"{PATH}/KZNOPE")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_partner_never_sees_another_partners_data(client, api, setup, make_partner):
    from conftest import SignedClient

    ref = api.post(PATH, purchase()).json()["kezbek_ref"]
    _, other_cred = make_partner("TOKMED")
    other = SignedClient(client, other_cred.key_id, other_cred.secret)
    assert other.get(f"{PATH}/{ref}").status_code == 404
    assert other.get(PATH).json()["results"] == []
    assert other.get("/api/v1/customers/628118770510/tier").status_code == 404
    # and the same partner_ref is free for the other partner
    assert other.post(PATH, purchase()).status_code == 201


def test_list_is_newest_first_filtered_and_cursor_paginated(api, setup):
    for n in range(5):
        api.post(PATH, purchase(partner_ref=f"L{n}", msisdn="628111111111" if n % 2 else "628222222222"))
    page = api.get(f"{PATH}?page_size=2").json()
    assert [r["partner_ref"] for r in page["results"]] == ["L4", "L3"]
    assert page["previous"] is None and "cursor=" in page["next"]
    next_path = page["next"].split("testserver", 1)[1]
    page2 = api.get(next_path).json()
    assert [r["partner_ref"] for r in page2["results"]] == ["L2", "L1"]
    filtered = api.get(f"{PATH}?msisdn=08111111111").json()
    assert [r["partner_ref"] for r in filtered["results"]] == ["L3", "L1"]
    assert api.get(f"{PATH}?status=PENDING").json()["results"][0]["partner_ref"] == "L4"
    assert api.get(f"{PATH}?status=SUCCEEDED").json()["results"] == []


@pytest.mark.parametrize(
    "query, field",
    [("status=NOPE", "status"), ("created_from=yesterday", "created_from"), ("msisdn=12345", "msisdn")],
)
def test_list_bad_filters_name_the_field(api, setup, query, field):
    response = api.get(f"{PATH}?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_tier_lookup(api, setup):
    for n in range(7):
        api.post(PATH, purchase(partner_ref=f"T{n}"))
    response = api.get("/api/v1/customers/08118770510/tier")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ["msisdn", "tier", "rank", "count", "promote_after", "next_tier"]} == {
        "msisdn": "628118770510", "tier": "SILVER", "rank": 2, "count": 2, "promote_after": 10, "next_tier": "GOLD",
    }
    assert [e["reason"] for e in body["journey"]] == ["PURCHASE", "PURCHASE", "PROMOTED", "PURCHASE", "PURCHASE", "PURCHASE", "PURCHASE"]
    assert body["journey"][2]["reward"] == "5000.00"
    assert api.get("/api/v1/customers/628999999999/tier").status_code == 404


@pytest.mark.parametrize(
    "overrides, field, code",
    [
        ({"amount": "0"}, "amount", "validation_error"),
        ({"amount": "-5"}, "amount", "validation_error"),
        ({"amount": "10.001"}, "amount", "validation_error"),
        ({"amount": "1000000000.01"}, "amount", "validation_error"),
        ({"amount": "abc"}, "amount", "validation_error"),
        ({"amount": True}, "amount", "validation_error"),
        ({"amount": None}, "amount", "validation_error"),
        ({"quantity": 0}, "quantity", "validation_error"),
        ({"quantity": 10001}, "quantity", "validation_error"),
        ({"quantity": "2"}, "quantity", "validation_error"),
        ({"quantity": 2.5}, "quantity", "validation_error"),
        ({"quantity": True}, "quantity", "validation_error"),
        ({"msisdn": "12345"}, "msisdn", "validation_error"),
        ({"msisdn": "0811-877-0510"}, "msisdn", "validation_error"),
        ({"msisdn": "62811"}, "msisdn", "validation_error"),
        ({"msisdn": "6281187705101234"}, "msisdn", "validation_error"),
        ({"msisdn": 628118770510}, "msisdn", "validation_error"),
        ({"email": "not-an-email"}, "email", "validation_error"),
        ({"partner_ref": ""}, "partner_ref", "validation_error"),
        ({"partner_ref": "x" * 65}, "partner_ref", "validation_error"),
        ({"partner_ref": "a\nb"}, "partner_ref", "validation_error"),
        ({"wallet": "OVO"}, "wallet", "unknown_wallet"),
        ({"wallet": 5}, "wallet", "validation_error"),  # a wrong type, not an unknown wallet
        ({"wallet": ["LSAJA"]}, "wallet", "validation_error"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(api, setup, overrides, field, code):
    before = counts()
    response = api.post(PATH, purchase(**overrides))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert field in error["fields"]
    assert counts() == before


@pytest.mark.parametrize("missing", ["partner_ref", "msisdn", "quantity", "amount", "wallet"])
def test_missing_field_is_named(api, setup, missing):
    body = purchase()
    del body[missing]
    response = api.post(PATH, body)
    assert response.status_code == 400
    assert missing in response.json()["error"]["fields"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'{"amount": NaN}', b"\xff\xfe"])
def test_malformed_body_is_a_400_in_error_shape(api, setup, raw):
    before = counts()
    response = api.post(PATH, raw=raw)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "validation_error"
    assert counts() == before


def test_a_key_given_twice_is_refused_not_read_as_its_last_value(api, setup):
    # json would keep the last: a purchase of 5.00 where the partner's first amount said 100,000.00
    raw = json.dumps(purchase(amount="100000.00"))[:-1].encode() + b', "amount": "5.00"}'
    before = counts()
    response = api.post(PATH, raw=raw)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["fields"]) == ("validation_error", {"body": ["Malformed JSON: the key 'amount' appears twice in one object"]})
    assert counts() == before


def test_inactive_wallet_is_unknown(api, setup, wallets):
    wallets["JOSVO"].active = False
    wallets["JOSVO"].save()
    response = api.post(PATH, purchase(wallet="josvo"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_wallet"


def test_a_repeat_gets_the_stored_result_after_its_wallet_was_deactivated(api, setup, wallets):
    # given a stored purchase paid to JOSVO, and JOSVO deactivated since
    first = api.post(PATH, purchase(wallet="JOSVO"))
    assert first.status_code == 201
    wallets["JOSVO"].active = False
    wallets["JOSVO"].save()
    before = counts()
    # when the partner retries it (a new signature, the same content): the stored result (DOMAIN.md §3)
    again = api.post(PATH, purchase(wallet="josvo"))
    assert again.status_code == 200
    assert again.json() == first.json()
    # the same partner_ref with other content is a conflict, whatever its wallet
    assert api.post(PATH, purchase(wallet="josvo", quantity=3)).json()["error"]["code"] == "conflict"
    assert api.post(PATH, purchase(wallet="OVO")).json()["error"]["code"] == "conflict"
    # and a new purchase is still refused for the wallet
    fresh = api.post(PATH, purchase(partner_ref="INV/NEW", wallet="josvo"))
    assert (fresh.status_code, fresh.json()["error"]["code"]) == (400, "unknown_wallet")
    assert counts() == before


def test_wallet_is_case_insensitive_and_number_amount_accepted(api, setup):
    response = api.post(PATH, purchase(wallet="gpaid", amount=10050.5))
    assert response.status_code == 201
    assert response.json()["wallet"] == "GPAID"
    assert response.json()["cashback"] == "100.51"


def test_unknown_api_path_and_wrong_method_answer_json(api, client, setup):
    response = client.get("/api/v1/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # served under a prefix (SCRIPT_NAME, behind a proxy): still the API's JSON, not an HTML page
    response = client.get("/api/v1/nope", SCRIPT_NAME="/cezbek")
    assert response.wsgi_request.path == "/cezbek/api/v1/nope"
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = api.client.generic("DELETE", PATH, b"", headers=api.headers("DELETE", PATH, b""))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "validation_error"


def test_transaction_keeps_its_rule_when_rules_change(api, setup):
    body = api.post(PATH, purchase()).json()
    CashbackRule.objects.update(archived=True)
    assert api.get(f"{PATH}/{body['kezbek_ref']}").json()["cashback"] == "7500.00"
    assert Transaction.objects.get().rule_id == setup.id
