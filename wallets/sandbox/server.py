"""The sandbox's HTTP server: five providers under their lower-case codes plus ``/_sandbox/`` admin.

Standard library only (plus ``requests`` for Xenit callbacks); nothing from Cezbek is imported.
"""
from __future__ import annotations

import csv
import heapq
import io
import itertools
import json
import queue
import re
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import date as Date, datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from .books import Books, format_at, money, now_iso
from .faults import PROVIDER_CODES, Dice, FaultError, Faults, validate
from .providers import (BadRequest, LimitExceeded, LinkSaja, Send, Xenit, env_credentials, make_providers,
                        parse_amount, parse_msisdn, parse_reference, same)

MAX_BODY = 1 << 20
CALLBACK_RETRY_DELAYS = (1.0, 2.0, 4.0)  # seconds before retry 1, 2 and 3
CALLBACK_TIMEOUT = 5.0


# -- JSON with Decimal amounts as numbers ------------------------------------------------------
_MARK = "\x00" + secrets.token_hex(4) + ":"
_MARK_RE = re.compile(r'"\\u0000' + _MARK[1:] + r'(-?[0-9]+(?:\.[0-9]+)?)\\u0000"')


def _prep(value):
    if isinstance(value, Decimal):
        return _MARK + format(value, "f") + "\x00"
    if isinstance(value, dict):
        return {k: _prep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_prep(v) for v in value]
    return value


def dumps(value) -> str:
    """JSON text; a ``Decimal`` is written as a number exactly as it reads (``10000.50``)."""
    return _MARK_RE.sub(r"\1", json.dumps(_prep(value)))


def _no_constants(name):
    raise ValueError(f"{name} is not allowed")


def loads(raw: bytes):
    return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)


# -- replies -----------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: object = None
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    close: bool = False

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str) and not self.content_type.startswith("application/json"):
            return self.body.encode("utf-8")
        return dumps(self.body).encode("utf-8")


DROP = object()  # close the socket without writing any response


# -- delayed work (Xenit completions and callbacks) ---------------------------------------------
class Scheduler:
    """A heap of timed jobs run by a few daemon worker threads (no thread per pending top-up)."""

    def __init__(self, workers: int = 8):
        self._heap: list = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._jobs: queue.Queue = queue.Queue()
        self._stopped = False
        threading.Thread(target=self._timer, name="sandbox-scheduler", daemon=True).start()
        for n in range(workers):
            threading.Thread(target=self._work, name=f"sandbox-worker-{n}", daemon=True).start()

    def call_later(self, delay_s: float, fn, *args):
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), fn, args))
            self._cond.notify()

    def _timer(self):
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            self._jobs.put((fn, args))

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # a failed job must not kill the worker
                traceback.print_exc(file=sys.stderr)

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def log(line: str):
    sys.stderr.write(f"{now_iso()} {line}\n")
    sys.stderr.flush()


# -- the sandbox -------------------------------------------------------------------------------
class Sandbox:
    def __init__(self, db: str = ":memory:", seed=None, credentials: dict | None = None):
        self.books = Books(db or ":memory:")
        self.faults = Faults()
        self.dice = Dice(seed)
        self.credentials = credentials or env_credentials()
        self.providers = make_providers(self.credentials)
        self.by_base = {code.lower(): p for code, p in self.providers.items()}
        self.scheduler = Scheduler()
        self._tokens: dict[str, float] = {}
        self._tokens_lock = threading.Lock()
        self._sessions = threading.local()
        self._active = 0
        self._active_lock = threading.Lock()

    # -- request entry -------------------------------------------------------------------------
    def dispatch(self, method: str, raw_path: str, headers, body: bytes):
        url = urlsplit(raw_path)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/_sandbox/"):
            return self.admin(method, path[len("/_sandbox/"):], query, body)
        base, _, rest = path[1:].partition("/")
        provider = self.by_base.get(base)
        if provider is None:
            return Reply(404, {"error": "not_found"})
        rest = "/" + rest
        if rest == "/settlements":
            return self.only(method, "GET") or self.settlement(provider, query)
        if isinstance(provider, LinkSaja) and rest == provider.auth_path:
            return self.only(method, "POST") or self.authorize(provider, body)
        if rest == provider.send_path:
            return self.only(method, "POST") or self.send(provider, headers, body)
        if provider.inquiry_prefix and rest.startswith(provider.inquiry_prefix) and len(rest) > len(provider.inquiry_prefix):
            reference = unquote(rest[len(provider.inquiry_prefix):])
            return self.only(method, "GET") or self.inquiry(provider, headers, reference)
        return Reply(404, {"error": "not_found"})

    @staticmethod
    def only(method: str, allowed: str):
        if method != allowed:
            return Reply(405, {"error": "method_not_allowed"}, headers={"Allow": allowed})
        return None

    def track(self, delta: int):
        with self._active_lock:
            self._active += delta

    @property
    def active(self) -> int:
        with self._active_lock:
            return self._active

    # -- fault helpers -------------------------------------------------------------------------
    def latency(self, faults: dict):
        delay = faults["latency_ms"]
        if faults["jitter_ms"]:
            delay += self.dice.uniform(-faults["jitter_ms"], faults["jitter_ms"])
        if delay > 0:
            time.sleep(delay / 1000)

    def draw_outcome(self, provider, faults: dict) -> str:
        """One draw against the cumulative rates, in this order; the rest is a plain credit."""
        bins = [("unavailable", faults["unavailable_rate"]), ("refuse", faults["refuse_rate"]),
                ("timeout", faults["timeout_rate"]), ("unknown", faults["unknown_rate"]),
                ("pending", faults.get("pending_rate", 0.0))]
        if not any(rate > 0 for _, rate in bins):
            return "credit"
        x, edge = self.dice.random(), 0.0
        for outcome, rate in bins:
            edge += rate
            if rate > 0 and x < edge:
                return outcome
        return "credit"

    # -- provider endpoints --------------------------------------------------------------------
    def authorize(self, provider, body: bytes):
        self.latency(self.faults.get(provider.code))
        try:
            data = loads(body)
        except ValueError:
            return Reply(400, {"error": "invalid_request", "message": "body must be JSON"})
        if not isinstance(data, dict) or not isinstance(data.get("email"), str) or not isinstance(data.get("password"), str):
            return Reply(400, {"error": "invalid_request", "message": "email and password are required"})
        if not (same(data["email"], self.credentials["LSAJAH2H_EMAIL"])
                and same(data["password"], self.credentials["LSAJAH2H_PASSWORD"])):
            return Reply(401, {"error": "unauthorized"})
        ttl = self.faults.get(provider.code)["token_ttl_seconds"]
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._tokens_lock:
            if len(self._tokens) > 1000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + ttl
        return Reply(200, {"token": token, "thirdPartyName": "Cezbek"})

    def token_valid(self, token: str) -> bool:
        with self._tokens_lock:
            expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def send(self, provider, headers, body: bytes):
        faults = self.faults.get(provider.code)
        self.latency(faults)
        outcome = self.draw_outcome(provider, faults)
        if outcome == "unavailable":
            return Reply(503, {"error": "unavailable"})
        denied = provider.authenticate(headers, self)
        if denied:
            return Reply(401, denied, headers={"WWW-Authenticate": "Basic"} if provider.code == "MTRANS" else {})
        try:
            data = loads(body)
            if not isinstance(data, dict):
                raise BadRequest("invalid_request", "body must be a JSON object")
            req = provider.parse(data)
        except BadRequest as exc:
            return Reply(400, provider.refusal_body(exc.reason, exc.message, 400, now_iso()))
        except LimitExceeded:
            return Reply(422, provider.refusal_body("limit_exceeded", "Amount exceeds the per-transfer limit",
                                                    422, now_iso()))
        except (ValueError, UnicodeDecodeError):
            return Reply(400, provider.refusal_body("invalid_request", "body must be JSON", 400, now_iso()))

        # Every random decision is taken before the books are touched.
        credits = outcome in ("credit", "pending")
        drop = False
        if outcome == "unknown":
            credits = self.dice.chance(faults["unknown_credit_rate"])
            drop = self.dice.chance(faults["unknown_drop_rate"])
        elif outcome == "timeout":
            credits = self.dice.chance(faults["timeout_credit_rate"])
        pending_plan = None
        if outcome == "pending":
            pending_plan = (self.dice.chance(faults["pending_fail_rate"]),
                            self.dice.chance(faults["callback_drop_rate"]), faults["callback_delay_ms"] / 1000)

        at = now_iso()
        provider_ref = provider.new_ref()
        code, ref = provider.code, req.reference
        with self.books.transaction() as books:
            record = books.record(code, ref) if provider.idempotent else None
            if record and record["status"] in ("credited", "pending"):
                # A replay: the original (current) body, nothing credited again, no fault applies.
                return Reply(200, loads(record["body"].encode()))
            epoch = books.epoch
            if outcome == "refuse":
                reason, message = provider.refusal
                reply_body = provider.refusal_body(reason, message, 422, at)
                if provider.idempotent:
                    books.put_record(code, ref, "failed", dumps(reply_body), None, req.wallet, req.msisdn,
                                     req.amount, req.extra.get("callback_url"), at)
                return Reply(422, reply_body)
            if outcome == "pending":
                reply_body = provider.status_body(provider_ref, at, "PENDING")
                books.put_record(code, ref, "pending", dumps(reply_body), provider_ref, req.wallet, req.msisdn,
                                 req.amount, req.extra.get("callback_url"), at)
            else:
                reply_body = provider.success_body(provider_ref, at, req)
                if credits:
                    books.book_credit(code, provider_ref, ref, req.wallet, req.msisdn, req.amount, at)
                    if provider.idempotent:
                        books.put_record(code, ref, "credited", dumps(reply_body), provider_ref, req.wallet,
                                         req.msisdn, req.amount, req.extra.get("callback_url"), at)

        if outcome == "pending":
            fail, drop_callback, delay = pending_plan
            self.scheduler.call_later(delay, self.complete_pending, provider, ref, epoch, fail, drop_callback)
            return Reply(200, reply_body)
        if outcome == "unknown":
            return DROP if drop else Reply(500, {"error": "internal_error"})
        if outcome == "timeout":
            time.sleep(faults["timeout_ms"] / 1000)  # the client has given up by now
            return Reply(200, reply_body) if credits else Reply(504, {"error": "gateway_timeout"})
        return Reply(200, reply_body)

    def inquiry(self, provider, headers, reference: str):
        self.latency(self.faults.get(provider.code))
        denied = provider.authenticate(headers, self)
        if denied:
            return Reply(401, denied, headers={"WWW-Authenticate": "Basic"} if provider.code == "MTRANS" else {})
        record = self.books.record(provider.code, reference)
        body = provider.inquiry_body(record) if record else None
        if body is None:
            return Reply(404, provider.not_found_body())
        return Reply(200, body)

    def settlement(self, provider, query):
        self.latency(self.faults.get(provider.code))
        raw = (query.get("date") or [""])[0]
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                raise ValueError
            day = Date.fromisoformat(raw)
        except ValueError:
            return Reply(400, {"error": "invalid_date", "message": "date must be YYYY-MM-DD"})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["provider_ref", "client_ref", "wallet", "msisdn", "amount", "fee", "status", "settled_at"])
        for credit in self.books.credits(provider.code, day.isoformat()):
            writer.writerow([credit["provider_ref"], credit["client_ref"] or "", credit["wallet"], credit["msisdn"],
                             credit["amount"], money(provider.fee), "SUCCESS", credit["at"]])
        filename = f"{provider.code.lower()}-{day.isoformat()}.csv"
        return Reply(200, out.getvalue(), content_type="text/csv; charset=utf-8",
                     headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    # -- Xenit pending top-ups -----------------------------------------------------------------
    def complete_pending(self, provider: Xenit, ref: str, epoch: int, fail: bool, drop_callback: bool):
        with self.books.transaction() as books:
            record = books.record(provider.code, ref)
            if books.epoch != epoch or not record or record["status"] != "pending":
                return  # reset since, or finished already
            at = now_iso()
            amount = Decimal(record["amount"])
            if fail:
                body = provider.status_body(record["provider_ref"], at, "FAILED")
                status = "failed"
            else:
                body = provider.status_body(record["provider_ref"], at, "SUCCESS")
                status = "credited"
                books.book_credit(provider.code, record["provider_ref"], ref, record["wallet"], record["msisdn"],
                                  amount, at)
            books.put_record(provider.code, ref, status, dumps(body), record["provider_ref"], record["wallet"],
                             record["msisdn"], amount, record["callback_url"], at)
            record = books.record(provider.code, ref)
        if drop_callback or not record["callback_url"]:
            log(f"CALLBACK {provider.code} {ref} {body['topup_status']} dropped")
            return
        payload = dumps(provider.full_body(record, body)).encode()
        self.post_callback(record["callback_url"], payload, ref, body["topup_status"], epoch, 0)

    def post_callback(self, url: str, payload: bytes, ref: str, status: str, epoch: int, attempt: int):
        if self.books.epoch != epoch:
            return
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        try:
            answer = session.post(url, data=payload, timeout=CALLBACK_TIMEOUT, headers={
                "Content-Type": "application/json",
                "X-Callback-Token": self.credentials["XENIT_CALLBACK_TOKEN"]})
            ok, outcome = 200 <= answer.status_code < 300, str(answer.status_code)
        except requests.RequestException as exc:
            ok, outcome = False, type(exc).__name__
        log(f"CALLBACK XENIT {ref} {status} attempt {attempt + 1} -> {outcome}")
        if not ok and attempt < len(CALLBACK_RETRY_DELAYS):
            self.scheduler.call_later(CALLBACK_RETRY_DELAYS[attempt], self.post_callback, url, payload, ref, status,
                                      epoch, attempt + 1)

    def resume_pending(self):
        """Pending top-ups found in a --db file from an earlier run are finished with the current faults."""
        xenit = self.providers["XENIT"]
        faults = self.faults.get("XENIT")
        for record in self.books.pending_records():
            self.scheduler.call_later(faults["callback_delay_ms"] / 1000, self.complete_pending, xenit,
                                      record["reference"], self.books.epoch,
                                      self.dice.chance(faults["pending_fail_rate"]),
                                      self.dice.chance(faults["callback_drop_rate"]))

    # -- administration ------------------------------------------------------------------------
    def admin(self, method: str, name: str, query, body: bytes):
        if name == "health":
            return self.only(method, "GET") or Reply(200, {"ok": True})
        if name == "reset":
            if method != "POST":
                return self.only(method, "POST")
            self.reset()
            return Reply(200, {"ok": True})
        if name == "faults":
            if method == "GET":
                return Reply(200, self.faults.all())
            if method != "POST":
                return self.only(method, "POST")
            try:
                return Reply(200, self.faults.update(loads(body) if body else {}))
            except (FaultError, ValueError, UnicodeDecodeError) as exc:
                return Reply(400, {"error": "invalid_faults", "message": str(exc)})
        if name == "ledger":
            if method == "GET":
                wanted = (query.get("provider") or [None])[0]
                if wanted is not None and wanted.upper() not in PROVIDER_CODES:
                    return Reply(400, {"error": "invalid_provider", "message": f"unknown provider {wanted!r}"})
                return Reply(200, {"credits": self.books.credits(wanted.upper() if wanted else None)})
            if method != "POST":
                return self.only(method, "POST")
            return self.book_stray(body)
        return Reply(404, {"error": "not_found"})

    def reset(self):
        self.books.reset()
        self.faults.reset()
        self.dice.reseed()

    def book_stray(self, body: bytes):
        """A credit Cezbek never sent (or never heard about), for reconciliation tests."""
        try:
            data = loads(body)
            if not isinstance(data, dict):
                raise BadRequest("invalid_request", "body must be a JSON object")
            code = str(data.get("provider") or "").upper()
            provider = self.providers.get(code)
            if provider is None:
                raise BadRequest("invalid_provider", "provider must be one of " + ", ".join(PROVIDER_CODES))
            wallet = data.get("wallet") or (provider.wallets[0] if len(provider.wallets) == 1 else None)
            if wallet not in provider.wallets:
                raise BadRequest("invalid_wallet", f"{code} credits {', '.join(provider.wallets)} only")
            msisdn = parse_msisdn(data.get("msisdn"), "msisdn")
            amount = parse_amount(data.get("amount"), "amount")
            client_ref = data.get("client_ref")
            if client_ref is not None:
                if not provider.idempotent:
                    raise BadRequest("invalid_request", f"{code} has no client reference: client_ref must be null")
                client_ref = parse_reference(client_ref, "client_ref")
            at = now_iso()
            if data.get("at") is not None:
                try:
                    moment = datetime.fromisoformat(str(data["at"]))
                except ValueError:
                    raise BadRequest("invalid_request", "at must be an ISO 8601 date-time") from None
                at = format_at(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
        except BadRequest as exc:
            return Reply(400, {"error": exc.reason, "message": exc.message})
        except LimitExceeded:
            return Reply(400, {"error": "invalid_amount", "message": "amount is above 1,000,000,000.00"})
        except (ValueError, UnicodeDecodeError):
            return Reply(400, {"error": "invalid_request", "message": "body must be JSON"})
        provider_ref = provider.new_ref()
        with self.books.transaction() as books:
            if client_ref is not None:
                record = books.record(code, client_ref)
                if record and record["status"] in ("credited", "pending"):
                    return Reply(409, {"error": "reference_exists",
                                       "message": f"{code} already has a transfer {client_ref!r}"})
            credit = books.book_credit(code, provider_ref, client_ref, wallet, msisdn, amount, at, stray=True)
            if client_ref is not None:
                # The provider did credit this reference: its inquiry and a replay must say so.
                reply_body = provider.success_body(provider_ref, at, Send(client_ref, wallet, msisdn, amount))
                books.put_record(code, client_ref, "credited", dumps(reply_body), provider_ref, wallet, msisdn,
                                 amount, None, at)
        return Reply(201, credit)

    def close(self, grace_s: float = 2.0):
        self.scheduler.stop()
        deadline = time.monotonic() + grace_s
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.books.close()


# -- HTTP ----------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CezbekSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this long

    def log_message(self, format, *args):  # noqa: A002 - one line per request is written by _serve
        pass

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def do_PUT(self):
        self._serve()

    def do_DELETE(self):
        self._serve()

    def do_PATCH(self):
        self._serve()

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            return Reply(411, {"error": "length_required"}, close=True)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            return Reply(400, {"error": "invalid_request", "message": "bad Content-Length"}, close=True)
        if length > MAX_BODY:
            return Reply(413, {"error": "too_large"}, close=True)
        return self.rfile.read(length)

    def _serve(self):
        started = time.perf_counter()
        sandbox: Sandbox = self.server.sandbox
        sandbox.track(+1)
        try:
            body = self._read_body()
            if isinstance(body, Reply):
                reply = body
            else:
                try:
                    reply = sandbox.dispatch(self.command, self.path, self.headers, body)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    reply = Reply(500, {"error": "internal_error"})
            if reply is DROP:
                self._drop()
                status = "DROP"
            else:
                self._write(reply)
                status = str(reply.status)
        finally:
            sandbox.track(-1)
        path = self.path.split("?", 1)[0]
        log(f"{self.command} {path} {status} {(time.perf_counter() - started) * 1000:.1f}ms")

    def _write(self, reply: Reply):
        payload = reply.payload()
        if reply.close:
            self.close_connection = True
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client went away (it gave up on a slow answer)
            self.close_connection = True

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many concurrent clients; the default backlog of 5 drops connections

    def __init__(self, address, sandbox: Sandbox):
        self.sandbox = sandbox
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a client hanging up is not worth a traceback
        super().handle_error(request, client_address)


def run(host: str = "127.0.0.1", port: int = 8765, db: str = ":memory:", seed=None, faults=None,
        env_faults: str | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop accepting, let running requests finish briefly, close."""
    sandbox = Sandbox(db, seed)
    for source in (env_faults, faults):
        if source:
            sandbox.faults.update(validate(source))
    sandbox.resume_pending()  # after the start-up faults, which decide how they finish
    server = SandboxServer((host, port), sandbox)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="sandbox-http",
                              daemon=True)
    thread.start()
    actual_host, actual_port = server.server_address[:2]
    log(f"sandbox listening on http://{actual_host}:{actual_port} (db {db or ':memory:'}, seed {seed})")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log("sandbox shutting down")
        server.shutdown()
        server.server_close()
        sandbox.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
