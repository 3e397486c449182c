"""The project's settings with bench/floor_urls.py as the URLconf (bench/floor.py only)."""

from cezbek.settings import *  # noqa: F403

ROOT_URLCONF = "floor_urls"
