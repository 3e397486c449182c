from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class LoyaltyConfig(AppConfig):
    name = "loyalty"

    def ready(self) -> None:
        from cezbek.snapshots import config_changed

        from .models import TierLevel, RewardRule

        # Cache invalidation only: every purchase reads this configuration from cezbek.snapshots.
        for model in (TierLevel, RewardRule,):
            post_save.connect(config_changed, sender=model, dispatch_uid=f"snapshot-save-{model.__name__}")
            post_delete.connect(config_changed, sender=model, dispatch_uid=f"snapshot-delete-{model.__name__}")
