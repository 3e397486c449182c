"""cezbek.sql: the hot paths' hand-written writes must store what the ORM would."""

from datetime import datetime, timezone as dt_timezone
from zoneinfo import ZoneInfo
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from cashback.models import Transaction
from cezbek import sql
from loyalty.models import JourneyEntry, LoyaltyState
from wallets.models import Payout, PayoutEvent

MOMENT = datetime(2026, 11, 22, 10, 30, tzinfo=dt_timezone.utc)


def _instances(partner, wallets, ladder):
    partner, tier = partner[0], ladder["BRONZE"]  # the fixture: (partner, credential)
    txn = Transaction(
        kezbek_ref="KZSQLTEST0000000000000000", partner=partner, partner_ref="sql-1", msisdn="628118770510", email="",
        quantity=2, amount=Decimal("750000.00"), wallet=wallets["LSAJA"], cashback=Decimal("7500.00"), reward=Decimal("0.00"),
        total=Decimal("7500.00"), tier=tier, tier_count=1, tier_expires_at=None, created_at=MOMENT,
    )
    payout = Payout(transaction=txn, wallet=wallets["LSAJA"], msisdn="628118770510", amount=Decimal("7500.00"),
                    status=Payout.Status.PENDING, flags=[], created_at=MOMENT)
    return txn, payout


def _sent(values, fields=None):
    """What the driver sends for these parameters (on PostgreSQL, client-side binding: SQL literals),
    in the statement slots of these fields (`sql._slot`: the cast of a value sent as text), or in
    plain `%s` slots, as Django's own statements have them."""
    if connection.vendor != "postgresql":
        return [repr(v) for v in values]  # no shortcut there: the very values Django prepares
    slots = [sql._slot(f) if v is not None else "%s" for f, v in zip(fields, values, strict=True)] if fields else ["%s"] * len(values)
    # (a None in a cast slot is a NULL of the column's own type: `NULL::timestamptz` stores what NULL does)
    return [connection.ops.compose_sql(slot, [v]) for slot, v in zip(slots, values, strict=True)]


def _prepared(instance, fields):
    """`sql._values` of a new instance, for any fields (the statement caches hold their plain types)."""
    return sql._values(instance, fields, [sql._plain_type(f) for f in fields], add=True, now=MOMENT)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the shortcut exists on PostgreSQL only")
def test_values_are_what_django_prepares(partner, wallets, ladder):
    # the shortcut for plain values must make the driver send exactly what get_db_prep_save's would
    # (Django wraps integers in psycopg's Int4/Int8 for their type; as literals they are the same)
    txn, payout = _instances(partner, wallets, ladder)
    txn.pk = 1  # as if saved: the payout's transaction_id
    payout.transaction_id = 1
    naive = datetime(2026, 11, 22, 10, 30)
    event = PayoutEvent(payout_id=5, from_status="", to_status="PENDING", note="created", actor=None)
    jakarta = datetime(2026, 11, 22, 17, 30, 0, 5, tzinfo=ZoneInfo("Asia/Jakarta"))
    odd = Payout(transaction_id=1, wallet=wallets["LSAJA"], msisdn="628118770510", amount=Decimal("1.00"), status=Payout.Status.HELD,
                 flags=["velocity", {"note": "it's a \\ back\\slash, é, \n"}], created_at=jakarta, next_check_at=MOMENT)
    for instance in (txn, payout, event, odd, Transaction(tier_expires_at=MOMENT, amount=5, quantity=True, email=7)):
        # not auto_now(_add): their pre_save reads the clock each time
        fields = [f for f in instance._meta.concrete_fields if not f.primary_key and not getattr(f, "auto_now", False) and not getattr(f, "auto_now_add", False)]
        expected = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
        got = _prepared(instance, fields)
        assert _sent(got, fields) == _sent(expected)
    # datetimes, JSON and TextChoices really went as text (else this compared psycopg with itself)
    got = dict(zip(["created_at", "flags", "status"], _prepared(odd, [Payout._meta.get_field(n) for n in ("created_at", "flags", "status")])))
    assert all(type(v) is str for v in got.values()) and got["created_at"] == "2026-11-22 17:30:00.000005+07:00"
    # the shortcut is really taken for the plain columns (else this test would compare Django with Django)
    assert {f.name for f in Payout._meta.concrete_fields if sql._plain_type(f)} >= {"transaction", "msisdn", "amount", "created_at"}
    # Django refuses a non-finite decimal; the shortcut must not let one through
    with pytest.raises(Exception, match="(?i)decimal"):
        _prepared(Transaction(amount=Decimal("NaN")), [Transaction._meta.get_field("amount")])
    entered = LoyaltyState(entered_at=naive)
    field = LoyaltyState._meta.get_field("entered_at")
    with pytest.warns(RuntimeWarning):  # a naive datetime still goes through Django (and its warning)
        assert _sent(_prepared(entered, [field]), [field]) == _sent([field.get_db_prep_save(naive, connection)])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the text form exists on PostgreSQL only")
def test_an_instant_for_hand_written_sql_is_sent_as_psycopg_would_send_it(db):
    for moment in (MOMENT, datetime(2026, 11, 22, 17, 30, 0, 5, tzinfo=ZoneInfo("Asia/Jakarta"))):
        slot, value = sql.instant(moment)
        assert connection.ops.compose_sql(slot, [value]) == connection.ops.compose_sql("%s", [connection.ops.adapt_datetimefield_value(moment)])
        with connection.cursor() as cursor:  # and the server reads the same instant
            cursor.execute(f"SELECT {slot}", [value])
            assert cursor.fetchone()[0] == moment


def test_insert_chain_writes_linked_rows_in_one_go(partner, wallets, ladder, django_assert_num_queries):
    txn, payout = _instances(partner, wallets, ladder)
    event = PayoutEvent(payout_id=None, from_status="", to_status="PENDING", note="created", actor=None)
    state = LoyaltyState.objects.create(partner=partner[0], msisdn="628118770510", tier=txn.tier, count=0, entered_at=MOMENT)
    state.count = 1
    entry = JourneyEntry(state=state, reason="PURCHASE", tier_before=txn.tier, tier_after=txn.tier, count=1, created_at=MOMENT)
    rows = [sql.Row(txn), sql.Row(entry, links={"transaction_id": txn}), sql.Row(payout, links={"transaction_id": txn}),
            sql.Row(event, links={"payout_id": payout})]
    statements = 1 if connection.vendor == "postgresql" else 5
    with django_assert_num_queries(statements):
        sql.insert_chain(rows, updates=[(state, ["count", "updated_at"])])
    stored = Payout.objects.select_related("transaction").get(pk=payout.pk)
    assert stored.transaction.kezbek_ref == txn.kezbek_ref and stored.amount == Decimal("7500.00") and stored.created_at == MOMENT
    assert JourneyEntry.objects.get(pk=entry.pk).transaction_id == txn.pk
    assert PayoutEvent.objects.get(pk=event.pk).payout_id == payout.pk
    assert LoyaltyState.objects.get(pk=state.pk).count == 1
    # the instances know their ids, and the payout still holds its transaction without a query
    assert payout.transaction_id == txn.pk and event.payout_id == payout.pk
    with django_assert_num_queries(0):
        assert payout.transaction is txn


def test_a_chains_auto_now_fields_take_one_instant(partner, wallets, ladder):
    # what DateTimeField.pre_save does with the clock, with one reading for the whole statement
    # (on PostgreSQL; SQLite's one statement per row goes through pre_save itself)
    txn, payout = _instances(partner, wallets, ladder)
    event = PayoutEvent(payout_id=None, from_status="", to_status="PENDING", note="created", actor=None)
    state = LoyaltyState.objects.create(partner=partner[0], msisdn="628118770510", tier=txn.tier, count=0, entered_at=MOMENT)
    state.count = 1
    rows = [sql.Row(txn), sql.Row(payout, links={"transaction_id": txn}), sql.Row(event, links={"payout_id": payout})]
    before = timezone.now()
    sql.insert_chain(rows, updates=[(state, ["count", "updated_at"])])
    stamps = {payout.updated_at, event.created_at, state.updated_at}
    assert all(before <= stamp <= timezone.now() for stamp in stamps)
    if connection.vendor == "postgresql":
        assert len(stamps) == 1
    assert payout.created_at == MOMENT  # not auto: as given
    assert Payout.objects.get(pk=payout.pk).updated_at == payout.updated_at
    assert PayoutEvent.objects.get(pk=event.pk).created_at == event.created_at
    assert LoyaltyState.objects.get(pk=state.pk).updated_at == state.updated_at
    # an instant given is the one taken
    txn2, payout2 = _instances(partner, wallets, ladder)
    txn2.kezbek_ref, txn2.partner_ref = "KZSQLTEST0000000000000001", "sql-2"
    event2 = PayoutEvent(payout_id=None, from_status="", to_status="PENDING", note="created", actor=None)
    sql.insert_chain([sql.Row(txn2), sql.Row(payout2, links={"transaction_id": txn2}), sql.Row(event2, links={"payout_id": payout2})], now=MOMENT)
    if connection.vendor == "postgresql":
        assert Payout.objects.get(pk=payout2.pk).updated_at == MOMENT == payout2.updated_at
        assert PayoutEvent.objects.get(pk=event2.pk).created_at == MOMENT == event2.created_at


def test_nulls_written_into_the_text_where_the_values_are_none():
    text = 'INSERT INTO "t" ("a", "b", "c") VALUES (%s, %s, %s)'
    assert sql._nulls_written(text, (), 3) is text
    assert sql._nulls_written(text, (1,), 3) == 'INSERT INTO "t" ("a", "b", "c") VALUES (%s, NULL, %s)'
    assert sql._nulls_written(text, (0, 2), 3) == 'INSERT INTO "t" ("a", "b", "c") VALUES (NULL, %s, NULL)'
    # a template whose slots are not exactly its parameters is refused, not silently shifted
    with pytest.raises(ValueError, match="expected 2 parameter slots, not 3"):
        sql._nulls_written(text, (1,), 2)
    with pytest.raises(ValueError):
        sql._nulls_written('SELECT 1 WHERE "a" LIKE \'x%%\' AND "b" = %s', (), 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one chain statement on PostgreSQL only")
def test_purchase_chain_sends_few_enough_parameters_for_the_driver_to_cache_its_parsing(partner, wallets, ladder):
    # psycopg re-parses a query with more than 50 parameters, or longer than 4096 characters, on
    # every execution (psycopg/_queries.py); a purchase's chain keeps under that by writing its None
    # values (about ten) as NULL.
    from psycopg import _queries

    txn, payout = _instances(partner, wallets, ladder)
    event = PayoutEvent(payout_id=None, from_status="", to_status="PENDING", note="created", actor=None)
    state = LoyaltyState.objects.create(partner=partner[0], msisdn="628118770510", tier=txn.tier, count=0, entered_at=MOMENT)
    entry = JourneyEntry(state=state, reason="PURCHASE", tier_before=txn.tier, tier_after=txn.tier, count=1, created_at=MOMENT)
    rows = [sql.Row(txn), sql.Row(entry, links={"transaction_id": txn}), sql.Row(payout, links={"transaction_id": txn}),
            sql.Row(event, links={"payout_id": payout})]
    sent = []

    def spy(execute, text, params, many, context):
        sent.append((text, params))
        return execute(text, params, many, context)

    with connection.execute_wrapper(spy):
        sql.insert_chain(rows, updates=[(state, ["tier", "count", "entered_at", "expires_at", "updated_at"])])
    [(text, params)] = sent
    assert None not in params and text.count("NULL") >= 8  # tier_expires_at, the payout's provider and fees, the event's actor…
    assert len(params) <= _queries.MAX_CACHED_STATEMENT_PARAMS and len(text) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    stored = Payout.objects.get(pk=payout.pk)
    assert stored.provider_id is None and stored.fee is None and stored.amount == Decimal("7500.00")
    assert Transaction.objects.get(pk=txn.pk).tier_expires_at is None and LoyaltyState.objects.get(pk=state.pk).expires_at is None


def test_the_statement_caches_hold_each_fields_plain_type_in_step_with_the_fields():
    for model in (Transaction, JourneyEntry, Payout, PayoutEvent, LoyaltyState):
        _, fields, plains = sql._insert_head(model)
        assert plains == tuple(map(sql._plain_type, fields))
    _, targets, plains = sql._update_head(LoyaltyState, ("tier", "count", "entered_at"))
    assert plains == tuple(map(sql._plain_type, targets))
    shape = (
        ((Transaction, ()), (Payout, (("transaction_id", 0),)), (PayoutEvent, (("payout_id", 1),))),
        ((LoyaltyState, ("count", "expires_at")),),
    )
    _, rows, updates = sql._chain_statement(shape)
    for fields, plains in (*rows, *updates):
        assert len(fields) == len(plains) and plains == tuple(map(sql._plain_type, fields))
    assert "transaction_id" not in {f.attname for f in rows[1][0]}  # linked: written from r0, not a parameter
    if connection.vendor == "postgresql":
        assert {sql._plain_type(f) for f in rows[1][0]} >= {str, Decimal, datetime}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one chain statement on PostgreSQL only")
def test_a_chain_that_breaks_a_constraint_raises_djangos_integrity_error(partner, wallets, ladder):
    # transaction_record tells a repeated purchase (or a kezbek_ref drawn twice) by Django's
    # IntegrityError, and the chain must leave nothing of itself behind
    from django.db import IntegrityError, transaction

    txn, _ = _instances(partner, wallets, ladder)
    sql.insert_chain([sql.Row(txn)])
    again, payout = _instances(partner, wallets, ladder)  # the same partner_ref and kezbek_ref
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.insert_chain([sql.Row(again), sql.Row(payout, links={"transaction_id": again})])
    assert Transaction.objects.filter(partner_ref="sql-1").count() == 1 and not Payout.objects.filter(transaction__partner_ref="sql-1").exists()


def _same_instance(made, expected, *, unsaved=None):
    """Two unsaved instances hold the same values, the same related instances cached, the same state;
    `unsaved`: a relation whose cached instances are two unsaved twins (equal only to themselves)."""
    values = {k: v for k, v in vars(made).items() if k != "_state"}
    assert values == {k: v for k, v in vars(expected).items() if k != "_state"}
    assert {k: type(v) for k, v in values.items()} == {k: type(v) for k, v in vars(expected).items() if k != "_state"}
    assert made._state.adding is expected._state.adding is True and made._state.db == expected._state.db
    made_cache, expected_cache = dict(made._state.fields_cache), dict(expected._state.fields_cache)
    if unsaved:
        twins = made_cache.pop(unsaved), expected_cache.pop(unsaved)
        assert twins[0] is not twins[1] and vars(twins[0]).keys() == vars(twins[1]).keys()
        assert twins[0]._state.db == twins[1]._state.db
    assert made_cache == expected_cache


def test_new_makes_the_instance_the_keyword_constructor_makes(partner, wallets, ladder):
    txn, _ = _instances(partner, wallets, ladder)
    tier = ladder["BRONZE"]
    given = {  # as the purchase path gives them: relations by instance or by id, fields left out, None
        Transaction: dict(kezbek_ref="KZNEW", partner=partner[0], partner_ref="n-1", msisdn="628118770510", quantity=1,
                          amount=Decimal("10.00"), wallet=wallets["LSAJA"], rule=None, cashback=Decimal("0.10"),
                          reward=Decimal("0.00"), total=Decimal("0.10"), tier_id=tier.id, tier_count=1, created_at=MOMENT),
        LoyaltyState: dict(partner_id=partner[0].id, msisdn="628118770510", tier_id=tier.id, count=0, entered_at=MOMENT, expires_at=None),
        JourneyEntry: dict(state=LoyaltyState(id=7), transaction_id=None, reason="PURCHASE", tier_before_id=tier.id,
                           tier_after_id=tier.id, count=1, reward=Decimal("0.00"), expires_at=None, created_at=MOMENT),
        PayoutEvent: dict(payout_id=None, from_status="", to_status="PENDING", note="created", actor=None),
        type(tier): dict(id=tier.id, name=tier.name, rank=tier.rank),
    }
    for model, values in given.items():
        _same_instance(sql.new(model, **values), model(**values))
    # a one-to-one given by instance: cached both ways, as its descriptor does (the purchase's
    # document reads txn.payout without a query); mutable defaults are fresh per instance
    made = sql.new(Payout, transaction=txn, wallet_id=txn.wallet_id, msisdn=txn.msisdn, amount=txn.total, status="PENDING", created_at=MOMENT)
    assert txn.payout is made and made.transaction is txn
    other, _ = _instances(partner, wallets, ladder)
    expected = Payout(transaction=other, wallet_id=txn.wallet_id, msisdn=txn.msisdn, amount=txn.total, status="PENDING", created_at=MOMENT)
    assert other.payout is expected
    _same_instance(made, expected, unsaved="transaction")
    assert made.flags == [] and made.flags is not sql.new(Payout).flags


def test_new_refuses_what_the_keyword_constructor_refuses(wallets):
    with pytest.raises(TypeError, match="unexpected field.*colour"):
        sql.new(Payout, msisdn="628118770510", colour="red")
    with pytest.raises(ValueError, match="wallet must be a Wallet"):
        sql.new(Payout, wallet=wallets["LSAJA"].id)
    with pytest.raises(TypeError, match="wallet twice"):  # Django would let the id win over the instance, silently
        sql.new(Payout, wallet=wallets["LSAJA"], wallet_id=wallets["GPAID"].id)
    with pytest.raises(ValueError):  # Django's own refusal, for comparison
        Payout(wallet=wallets["LSAJA"].id)
