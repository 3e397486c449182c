"""The OpenAPI schema documents the signing headers, every field and every error (API.md)."""

import json
import re

import pytest

from cezbek.api.docs import ERROR_CODES


@pytest.fixture
def schema(client, db):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_lists_every_endpoint_with_signing(schema):
    paths = schema["paths"]
    assert set(paths) >= {"/api/v1/cashbacks", "/api/v1/cashbacks/{kezbek_ref}", "/api/v1/customers/{msisdn}/tier"}
    schemes = schema["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"X-Cezbek-Key", "X-Cezbek-Timestamp", "X-Cezbek-Signature"}
    partner_paths = [p for p in paths if not p.startswith("/api/v1/providers/")]
    for path in partner_paths:
        for operation in paths[path].values():
            header_params = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
            assert header_params == {"X-Cezbek-Key", "X-Cezbek-Timestamp", "X-Cezbek-Signature"}
            assert {"400", "401", "429", "500"} <= set(operation["responses"])
            assert operation["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
            assert {"405", "406"} <= set(operation["responses"])  # the method and the Accept header, refused as JSON


def test_provider_callback_is_documented_with_its_own_token(schema):
    operation = schema["paths"]["/api/v1/providers/{code}/callback"]["post"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "header"} == {"X-Callback-Token"}
    assert {"200", "401", "404"} <= set(operation["responses"])


def test_schema_documents_fields_and_error_codes(schema):
    components = schema["components"]["schemas"]
    request = components["PurchaseInputRequest"]
    assert set(request["required"]) == {"partner_ref", "msisdn", "quantity", "amount", "wallet"}
    assert set(request["properties"]) == {"partner_ref", "msisdn", "email", "quantity", "amount", "wallet"}
    output = components["TransactionOutput"]["properties"]
    assert set(output) == {"kezbek_ref", "partner_ref", "msisdn", "wallet", "quantity", "amount", "cashback", "reward", "total", "tier", "payout", "created_at"}
    code = components["ErrorBody"]["properties"]["code"]
    if "$ref" in code:
        code = components[code["$ref"].rsplit("/", 1)[1]]
    assert code["enum"] == ERROR_CODES
    create = schema["paths"]["/api/v1/cashbacks"]["post"]["responses"]
    assert {"200", "201", "409"} <= set(create)


def test_swagger_ui_is_served_with_its_files_from_the_app_itself(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger" in page.lower()
    # no CDN: the docs load on a machine without internet (drf-spectacular-sidecar)
    assert "cdn.jsdelivr.net" not in page and "//unpkg.com" not in page
    scripts = re.findall(r'src="([^"]+\.js)"', page)
    assert scripts and all(src.startswith("/static/drf_spectacular_sidecar/") for src in scripts)
    for src in scripts:
        assert client.get(src).status_code == 200, src
