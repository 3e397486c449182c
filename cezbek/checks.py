"""`manage.py check --deploy` refuses the development defaults (OPERATIONS.md: `DJANGO_SECRET_KEY`,
`DJANGO_DEBUG`, `DJANGO_ALLOWED_HOSTS` "development values, refused by `check --deploy`";
`CEZBEK_ENCRYPTION_KEY` "derived for development only").

Django's own deploy checks warn about DEBUG and a weak secret key, which leaves the command's exit
status 0 unless it is run with `--fail-level WARNING`, and say nothing of the development hosts or
the derived encryption key. These are errors, so a plain `check --deploy` exits non-zero.
"""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def development_defaults(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    if settings.DEBUG:
        errors.append(Error("DJANGO_DEBUG is on (the development default).", hint="Set DJANGO_DEBUG=0.", id="cezbek.E001"))
    if settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY:
        errors.append(Error("DJANGO_SECRET_KEY is the development key.", hint="Set DJANGO_SECRET_KEY to 50+ random characters.", id="cezbek.E002"))
    if settings.ALLOWED_HOSTS == settings.DEVELOPMENT_ALLOWED_HOSTS.split(","):
        errors.append(
            Error("DJANGO_ALLOWED_HOSTS is the development list (localhost, testserver).", hint="Set it to the hosts partners call.", id="cezbek.E003")
        )
    if settings.CEZBEK_ENCRYPTION_KEY_DERIVED:
        errors.append(
            Error(
                "CEZBEK_ENCRYPTION_KEY is not set: partner secrets would be encrypted with a key derived from the secret key.",
                hint="Set CEZBEK_ENCRYPTION_KEY (a Fernet key; comma-separated, newest first, when rotating).",
                id="cezbek.E004",
            )
        )
    return errors
