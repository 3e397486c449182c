"""What operations save in the admin, `cezbek_config export` then `import` takes back (OPERATIONS.md:
export followed by import is a no-op). The admin refuses, with the field named, what the import
would refuse: a code or MSISDN in another form, a promotion on the top tier, a reward past the
tier's promotion. Found by a review that saved each through the admin's own forms."""

import json

from django.core.management import call_command
from django.urls import reverse

from cezbek.configuration import config_export, config_import
from loyalty.models import RewardRule, TierLevel
from partners.models import Partner
from wallets.models import Provider, Wallet


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def errors_of(response) -> str:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    return response.content.decode()


def test_codes_and_msisdns_are_taken_only_in_the_form_the_import_takes(ops, wallets, partner):
    response = ops.post(url(Wallet, "add"), {"code": "ovo-id", "name": "OVO", "active": "on"})
    assert "2 to 16 upper-case letters, digits or _." in errors_of(response)
    response = ops.post(url(Provider, "add"), {"code": "xen it", "name": "Xen", "kind": "aggregator", "priority": "5", "active": "on"})
    assert "2 to 16 upper-case letters, digits or _." in errors_of(response)
    assert not Wallet.objects.filter(name="OVO").exists() and not Provider.objects.exists()

    lajada = partner[0]
    page = ops.get(url(Partner, "change", lajada.pk)).context["adminform"].form
    form = {name: value for name, value in page.initial.items() if value is not None and name != "logo"}
    response = ops.post(url(Partner, "change", lajada.pk), {**form, "msisdn": "0811-222-333"})
    assert "A mobile number in the 62… form" in errors_of(response)
    lajada.refresh_from_db()
    assert lajada.msisdn == ""


def test_the_ladders_shape_is_kept_as_the_import_checks_it(ops, ladder):
    gold, bronze = ladder["GOLD"], ladder["BRONZE"]
    inline = {"rewards-TOTAL_FORMS": "0", "rewards-INITIAL_FORMS": "0"}
    # a promotion on the top tier: there is nowhere to go
    response = ops.post(url(TierLevel, "change", gold.pk), {"name": "GOLD", "rank": "3", "promote_after": "7", "validity_days": "180", **inline})
    assert "Must be empty on the top tier: no tier ranks higher." in errors_of(response)
    # a reward for a purchase the tier's customers never make: they move up after the 5th
    response = ops.post(url(RewardRule, "add"), {"tier": bronze.pk, "nth": "9", "reward": "1000.00"})
    assert "BRONZE promotes after 5 purchases, so purchase 9 is never reached." in errors_of(response)
    # nor may the promotion move below a reward the tier already has (BRONZE's 5th)
    response = ops.post(url(TierLevel, "change", bronze.pk), {"name": "BRONZE", "rank": "1", "promote_after": "4", **inline})
    assert "The reward for purchase 5 would never be reached: customers move up after 4." in errors_of(response)
    gold.refresh_from_db()
    bronze.refresh_from_db()
    assert (gold.promote_after, bronze.promote_after) == (None, 5)
    assert not RewardRule.objects.filter(tier=bronze, nth=9).exists()


def test_what_the_admin_saved_exports_and_imports_as_a_no_op(ops, wallets, ladder, partner, tmp_path):
    # given valid edits through the admin's forms
    assert ops.post(url(Wallet, "add"), {"code": "OVO_ID", "name": "OVO", "active": "on"}).status_code == 302
    assert ops.post(url(RewardRule, "add"), {"tier": ladder["BRONZE"].pk, "nth": "3", "reward": "1000.00"}).status_code == 302
    # when the configuration is exported and imported again
    exported = config_export()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(exported))
    call_command("cezbek_config", "import", str(path))
    # then nothing moved
    assert config_export() == exported
    assert config_import(exported) == {section: {"created": 0, "updated": 0, "archived": 0} for section in exported}
