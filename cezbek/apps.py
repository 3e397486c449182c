from django.apps import AppConfig


class CezbekConfig(AppConfig):
    name = "cezbek"
    verbose_name = "Cezbek"

    def ready(self) -> None:
        from cezbek import checks  # noqa: F401  (registers them)
