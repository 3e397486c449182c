"""A bare WSGI app for bench/floor.py (gunicorn's sync worker alone), and the document the floors
answer with (a purchase's size). Not part of the application; served only by the bench."""

import json

DOCUMENT = {
    "kezbek_ref": "KZAK3T6GA2UPCYCV6NAIK2YNY4", "partner_ref": "INV/001", "msisdn": "628118770511", "wallet": "LSAJA",
    "quantity": 2, "amount": "750000.00", "cashback": "11250.00", "reward": "0.00", "total": "11250.00",
    "tier": {"name": "Bronze", "count": 1, "expires_at": None},
    "payout": {"status": "PENDING", "provider": None, "flags": []}, "created_at": "2026-11-22T14:29:50+07:00",
}
BODY = json.dumps(DOCUMENT).encode()


def hello(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
