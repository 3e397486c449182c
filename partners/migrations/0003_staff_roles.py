"""The staff groups Operations and Finance (cezbek/roles.py).

Django creates permissions only after `migrate` (post_migrate), so on a fresh database none exist
yet when this runs: it creates those of the apps migrated so far, then the groups with whatever of
their permissions exist. The post_migrate handler in partners/apps.py runs the same sync after every
migrate, attaching the permissions of models and custom permissions added later.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_staff_groups(apps, schema_editor):
    from cezbek.roles import roles_sync

    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # Historical app configs have no models module, which create_permissions takes as "no models".
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps, using=using)
        app_config.models_module = None
    roles_sync(apps=apps, using=using)


def remove_staff_groups(apps, schema_editor):
    from cezbek.roles import ROLES

    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0002_partner_logo"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The models whose permissions the groups hold; later ones are attached by post_migrate.
        ("cashback", "0002_initial"),
        ("loyalty", "0001_initial"),
        ("wallets", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_staff_groups, remove_staff_groups)]
