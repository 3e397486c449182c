"""The browser middlewares (session, authentication, messages) serve the admin's pages and step
aside for the signed partner API (cezbek/middleware.py)."""

from conftest import SignedClient


def test_a_partner_api_request_runs_without_the_browser_middlewares_even_with_a_staff_session(ops, partner, wallets, ladder):
    # `ops` is a client logged in to the admin: its session cookie goes along with the signed request
    _, credential = partner
    api = SignedClient(ops, credential.key_id, credential.secret)
    purchase = {"partner_ref": "INV/MW-1", "msisdn": "628118770510", "quantity": 1, "amount": "100000.00", "wallet": "LSAJA"}
    response = api.post("/api/v1/cashbacks", purchase)
    assert response.status_code == 201, response.content
    request = response.wsgi_request
    assert not hasattr(request, "session") and not hasattr(request, "_messages")
    assert not hasattr(request, "auser")  # Django's lazy user is never attached; DRF sets `user` to the partner
    assert request.user == partner[0]


def test_an_empty_session_cookie_is_left_alone_by_the_partner_api(api, wallets, ladder):
    # Django's session middleware answers with a Set-Cookie deleting it; the API does not
    # read sessions, so it does not touch their cookie either
    api.client.cookies["sessionid"] = ""  # present but empty: Django deletes such a cookie when it runs
    purchase = {"partner_ref": "INV/MW-2", "msisdn": "628118770510", "quantity": 1, "amount": "100000.00", "wallet": "LSAJA"}
    response = api.post("/api/v1/cashbacks", purchase)
    assert response.status_code == 201, response.content
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")


def test_the_admin_still_has_them(ops):
    response = ops.get("/admin/")
    assert response.status_code == 200
    request = response.wsgi_request
    assert request.session.session_key and request.user.username == "rina.ops" and hasattr(request, "_messages")
