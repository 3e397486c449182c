#!/usr/bin/env python3
"""Sign and send one request to the Cezbek partner API (API.md, "Authentication: signed requests").

Standard library only, so a partner can copy it as a reference client:

    python scripts/signed_request.py --key KEY_ID --secret SECRET \\
        POST /api/v1/cashbacks '{"partner_ref": "INV/001", "msisdn": "628118770510", "quantity": 2,
                                 "amount": "750000.00", "wallet": "LSAJA"}'
    python scripts/signed_request.py GET '/api/v1/cashbacks?msisdn=628118770510'

The key id and secret may also come from CEZBEK_KEY_ID and CEZBEK_SECRET (keeps the secret out of
shell history), the base URL from --url or CEZBEK_API_URL (default http://127.0.0.1:8000).
BODY is sent byte for byte as given; "@FILE" reads it from a file and "-" from standard input.

String to sign, lines joined by "\\n": METHOD, the path with its query string exactly as sent, the
timestamp (Unix seconds), the lowercase hex SHA-256 of the raw body. The signature is the lowercase
hex HMAC-SHA256 of that string keyed with the secret, sent in X-Cezbek-Signature together with
X-Cezbek-Key and X-Cezbek-Timestamp.

Prints the HTTP status on standard error and the response body on standard output (JSON
pretty-printed); exits 0 for a 2xx/3xx answer, 1 for an error answer, 2 when nothing was received.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def string_to_sign(method: str, path: str, timestamp: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, timestamp, hashlib.sha256(body).hexdigest()])


def signature(secret: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    message = string_to_sign(method, path, timestamp, body).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def read_body(arg: str | None) -> bytes:
    if arg is None:
        return b""
    if arg == "-":
        return sys.stdin.buffer.read()
    if arg.startswith("@"):
        with open(arg[1:], "rb") as handle:
            return handle.read()
    return arg.encode("utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Sign and send one request to the Cezbek partner API.",
        epilog="Example: %(prog)s --key kzk_… --secret kzs_… GET /api/v1/customers/628118770510/tier",
    )
    parser.add_argument("method", help="HTTP method, e.g. POST or GET")
    parser.add_argument("path", help="path with query string, exactly as it is to be sent, e.g. /api/v1/cashbacks")
    parser.add_argument("body", nargs="?", help='raw body; "@FILE" reads a file, "-" standard input')
    parser.add_argument("--key", default=os.environ.get("CEZBEK_KEY_ID"), help="key id (default $CEZBEK_KEY_ID)")
    parser.add_argument("--secret", default=os.environ.get("CEZBEK_SECRET"), help="secret (default $CEZBEK_SECRET)")
    parser.add_argument(
        "--url",
        default=os.environ.get("CEZBEK_API_URL", "http://127.0.0.1:8000"),
        help="base URL of the server (default $CEZBEK_API_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--content-type",
        default=None,
        help="Content-Type of the body (default application/json; use text/csv for /api/v1/batches)",
    )
    parser.add_argument("--timestamp", type=int, default=None, help="Unix time to sign with (default now)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the string to sign and headers")
    args = parser.parse_args(argv)

    if not args.key or not args.secret:
        parser.error("a key id and a secret are needed: --key/--secret or CEZBEK_KEY_ID/CEZBEK_SECRET")
    if not args.path.startswith("/"):
        parser.error("the path must start with / (e.g. /api/v1/cashbacks)")

    method = args.method.upper()
    body = read_body(args.body)
    timestamp = str(args.timestamp if args.timestamp is not None else int(time.time()))
    headers = {
        "Accept": "application/json",
        "X-Cezbek-Key": args.key,
        "X-Cezbek-Timestamp": timestamp,
        "X-Cezbek-Signature": signature(args.secret, method, args.path, timestamp, body),
    }
    data = body if body or method not in ("GET", "HEAD", "DELETE") else None
    if data is not None or args.content_type:
        headers["Content-Type"] = args.content_type or "application/json"

    if args.verbose:
        print("string to sign:\n" + string_to_sign(method, args.path, timestamp, body), file=sys.stderr)
        print(f"{method} {args.url.rstrip('/')}{args.path}", file=sys.stderr)
        for name, value in headers.items():
            print(f"{name}: {value}", file=sys.stderr)
        print(file=sys.stderr)

    request = urllib.request.Request(args.url.rstrip("/") + args.path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, reason, payload = response.status, response.reason, response.read()
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, reason, payload = error.code, error.reason, error.read()
        content_type = error.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError) as error:
        print(f"no answer from {args.url}: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 2

    print(f"HTTP {status} {reason}", file=sys.stderr)
    text = payload.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    if text:
        print(text)
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
