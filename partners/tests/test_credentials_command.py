"""`partner_credentials`: issue, rotate and revoke a partner's key pairs from the command line."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from partners.models import Partner, PartnerCredential
from partners.selectors import credential_for_key
from partners.services import credential_secret


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("partner_credentials", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def lajada(db):
    return Partner.objects.create(code="LAJADA", name="Lajada")


def test_issue_prints_the_pair_once_as_json_and_stores_only_the_encrypted_secret(lajada):
    # when
    out, err = run("LAJADA", "--json")
    # then
    issued = json.loads(out)
    assert set(issued) == {"partner", "key_id", "secret"}
    assert issued["partner"] == "LAJADA"
    assert issued["key_id"].startswith("kzk_") and issued["secret"].startswith("kzs_")
    assert err == ""
    credential = credential_for_key(key_id=issued["key_id"])
    assert (credential.partner_id, credential.revoked_at) == (lajada.id, None)
    assert credential_secret(credential=credential) == issued["secret"]
    assert issued["secret"] not in credential.secret_encrypted
    assert PartnerCredential.objects.count() == 1


def test_human_output_says_the_secret_is_shown_once(lajada):
    out, _ = run("LAJADA")
    credential = PartnerCredential.objects.get()
    lines = out.splitlines()
    assert lines[0] == "Issued a key for partner LAJADA."
    assert lines[1] == f"  key id  {credential.key_id}"
    assert lines[2] == f"  secret  {credential_secret(credential=credential)}"
    assert lines[3].startswith("The secret is shown this once and cannot be retrieved later")


def test_rotate_adds_a_pair_and_keeps_the_old_one_until_revoked(lajada):
    # given a first pair
    first = json.loads(run("LAJADA", "--json")[0])
    # when: rotating
    out, err = run("LAJADA", "--rotate", "--json")
    second = json.loads(out)
    # then: both are live; stderr names the earlier one by prefix only
    assert second["partner"] == "LAJADA" and second["key_id"] != first["key_id"]
    assert credential_for_key(key_id=first["key_id"]).partner_id == lajada.id
    assert credential_for_key(key_id=second["key_id"]).partner_id == lajada.id
    assert err == (
        f"LAJADA has 1 earlier live key(s) ({first['key_id'][:8]}…); they stay valid until "
        "`partner_credentials LAJADA --revoke KEY_ID`.\n"
    )
    assert first["key_id"] not in err
    # when: revoking the old pair
    out, _ = run("LAJADA", "--revoke", first["key_id"], "--json")
    revoked = json.loads(out)
    # then: only the new pair authenticates
    assert (revoked["partner"], revoked["key_id"]) == ("LAJADA", first["key_id"])
    stored = PartnerCredential.objects.get(key_id=first["key_id"])
    assert stored.revoked_at is not None
    assert revoked["revoked_at"] == timezone.localtime(stored.revoked_at).isoformat()
    assert credential_for_key(key_id=first["key_id"]) is None
    assert credential_for_key(key_id=second["key_id"]).partner_id == lajada.id
    # revoking again is harmless and keeps the first revocation time
    out, _ = run("LAJADA", "--revoke", first["key_id"], "--json")
    assert json.loads(out)["revoked_at"] == revoked["revoked_at"]


def test_human_revoke_shows_only_the_prefix(lajada):
    key_id = json.loads(run("LAJADA", "--json")[0])["key_id"]
    out, _ = run("LAJADA", "--revoke", key_id)
    assert out.startswith(f"Revoked key {key_id[:8]}… of partner LAJADA (at ")
    assert key_id not in out


def test_bad_input_is_refused_and_changes_nothing(lajada, make_partner):
    other, other_credential = make_partner("TOKMED")
    with pytest.raises(CommandError, match="^no partner with code 'NOPE'$"):
        run("NOPE", "--json")
    with pytest.raises(CommandError, match="^Partner LAJADA has no key starting kzk_nope…$"):
        run("LAJADA", "--revoke", "kzk_nope_not_a_key")
    # another partner's key cannot be revoked through LAJADA
    with pytest.raises(CommandError, match=f"^Partner LAJADA has no key starting {other_credential.key_id[:8]}…$"):
        run("LAJADA", "--revoke", other_credential.key_id)
    with pytest.raises(CommandError, match="^--rotate and --revoke are separate steps"):
        run("LAJADA", "--rotate", "--revoke", other_credential.key_id)
    assert list(PartnerCredential.objects.values_list("key_id", "revoked_at")) == [(other_credential.key_id, None)]


def test_nothing_is_issued_or_revoked_when_the_shared_cache_does_not_answer(lajada, settings):
    # given a key, then the cache every process shares (where they learn of a revocation) unreachable
    issued = json.loads(run("LAJADA", "--json")[0])
    settings.CACHES = {**settings.CACHES, "down": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    settings.SHARED_CACHE = "down"
    # when an operator issues or revokes a key: one line, and nothing changed
    for args in (("LAJADA",), ("LAJADA", "--revoke", issued["key_id"])):
        with pytest.raises(CommandError, match=r"^the cache every process shares did not answer \(.*\): nothing changed$"):
            run(*args)
    assert list(PartnerCredential.objects.values_list("key_id", "revoked_at")) == [(issued["key_id"], None)]
