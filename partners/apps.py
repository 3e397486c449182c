from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class PartnersConfig(AppConfig):
    name = "partners"

    def ready(self) -> None:
        from cezbek.snapshots import config_changed

        from .models import Partner, PartnerCredential

        # Cache invalidation only: every purchase reads this configuration from cezbek.snapshots.
        for model in (Partner, PartnerCredential,):
            post_save.connect(config_changed, sender=model, dispatch_uid=f"snapshot-save-{model.__name__}")
            post_delete.connect(config_changed, sender=model, dispatch_uid=f"snapshot-delete-{model.__name__}")
        post_migrate.connect(staff_roles_sync, sender=self, dispatch_uid="partners-staff-roles-sync")


def staff_roles_sync(sender, *, using, apps=None, verbosity=1, **kwargs) -> None:
    """After every migrate (and test flush): the staff groups hold the permissions of every model now installed.

    Apps after `partners` in INSTALLED_APPS get their permissions later in the same post_migrate round, so
    they are created here first (create_permissions is idempotent).
    """
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    from cezbek.roles import roles_sync

    apps = apps or global_apps  # `flush` (tests' teardown) sends post_migrate without the migration state
    # The installed apps' configs, as Django's own post_migrate round uses them; `apps` is the migrated state.
    for app_config in global_apps.get_app_configs():
        if app_config.models_module is not None:
            create_permissions(app_config, verbosity=0, apps=apps, using=using)
    missing = roles_sync(apps=apps, using=using)
    if verbosity >= 2:
        for role, names in missing.items():
            if names:
                print(f"  Staff role {role}: not yet in the database, attached once migrated: {', '.join(names)}")
