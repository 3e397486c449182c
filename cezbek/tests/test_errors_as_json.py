"""No request yields an HTML error page or a stack trace, and bad input of every kind is a 4xx in
the documented shape (API.md "Errors"). Found by a black-box sweep of `make run`, which runs with
DEBUG on: Django's debug pages (the URL list, a stack trace with the settings for a Host not
allowed) reached partners, and some inputs reached the code as a 500."""

import base64
import json
import os
import time

import pytest
import requests
from django.db import connection

from cezbek.testing.web import gunicorn_running
from partners.signing import signed_headers

PATH = "/api/v1/cashbacks"


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert field in error["fields"], error
    return error


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG on, as make run", "DEBUG off"])
def test_django_own_error_pages_are_json_outside_the_admin(client, settings, debug, db):
    settings.DEBUG = debug
    for path in ["/", "/nope", "/api/v1/nope", "/api/v1/cashbacks/", "/healthz/", "/favicon.ico"]:
        assert_error(client.get(path), 404, "not_found")
    # a Host not allowed: with DEBUG on, Django's page held a stack trace and the settings
    error = assert_error(client.get(PATH, HTTP_HOST="evil.example"), 400, "validation_error")
    assert error["message"] == "Bad request."
    # the admin keeps its pages for its browsers
    admin = client.get("/admin/nope/")
    assert admin["Content-Type"].startswith("text/html")


def test_a_body_nested_too_deeply_is_a_400_naming_the_body(api, wallets, ladder, global_rule):
    error = assert_error(api.post(PATH, raw=b"[" * 5000 + b"]" * 5000), 400, "validation_error", "body")
    assert error["message"] == "Malformed JSON: nested too deeply."


def test_a_body_over_the_upload_limit_is_a_400_naming_the_body(api, settings, wallets, ladder, global_rule):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"partner_ref": "BIG", "msisdn": "628118770510", "quantity": 1, "amount": "1000.00", "wallet": "LSAJA", "pad": "x" * 2000})
    error = assert_error(api.post(PATH, raw=body.encode()), 400, "validation_error", "body")
    assert error["message"] == "The body is larger than 1000 bytes."


def test_timestamps_beyond_any_clock_are_refused_as_such(api, client):
    far = "9" * 309  # more than a float holds
    error = assert_error(client.get(PATH, headers=api.headers("GET", PATH, b"", timestamp=0) | {"X-Cezbek-Timestamp": far}), 401, "signature_expired")
    assert "300 s away from server time" in error["message"]
    assert_error(client.get(PATH, headers=api.headers("GET", PATH, b"") | {"X-Cezbek-Timestamp": "1²"}), 401, "authentication_failed")


def test_a_cursor_or_page_size_the_list_cannot_use_is_a_400_naming_it(api):
    crafted = base64.b64encode(b"p=abc").decode()
    for query in ["cursor=garbage", f"cursor={crafted}"]:
        error = assert_error(api.get(f"{PATH}?{query}"), 400, "validation_error", "cursor")
        assert error["message"] == "cursor: Not a cursor of this list: use a next or previous link as given."
    for size in ["0", "-1", "abc", "201"]:
        assert_error(api.get(f"{PATH}?page_size={size}"), 400, "validation_error", "page_size")
    assert api.get(f"{PATH}?page_size=200").status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_signature_covers_the_path_exactly_as_sent(make_partner, tmp_path):
    # through gunicorn, whose RAW_URI keeps the request line's path: `%2B` signed is `%2B` checked
    _, credential = make_partner("LAJADA")
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}", "WEB_CONCURRENCY": "1"}
    with gunicorn_running(env=env, log_path=tmp_path / "gunicorn.log") as (base, _):
        for n, path in enumerate(["/api/v1/customers/%2B628118770510/tier", "/api/v1/customers/628118770510/tier?x=a%2Fb+c"]):
            headers = signed_headers(key_id=credential.key_id, secret=credential.secret, method="GET", path=path, body=b"", timestamp=int(time.time()) - n)
            response = requests.get(base + path, headers=headers, timeout=10)
            # authenticated: the customer is unknown to this partner, which is a 404, not a 401
            assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), (path, response.text)
