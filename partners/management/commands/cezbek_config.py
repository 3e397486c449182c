"""`cezbek_config export [FILE]` and `cezbek_config import FILE` (OPERATIONS.md "Configuration as code")."""

import json
import os
import sys
import tempfile

from django.core.management.base import BaseCommand, CommandError

from cezbek.api.parsers import object_without_repeats
from cezbek.configuration import SECTIONS, config_export, config_import
from cezbek.errors import ValidationFailed
from cezbek.snapshots import NotShared


class Command(BaseCommand):
    help = (
        "Exports the whole business configuration as JSON (to FILE, or stdout without one), or imports "
        "FILE in one database transaction: wallets, providers and partners upserted by code; fees, "
        "cashback rules, tiers and rewards replaced as sets (old rows archived, never deleted)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["export", "import"])
        parser.add_argument("file", nargs="?", help="export: where to write (default stdout); import: the file ('-' = stdin)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the result as JSON on stdout")

    def handle(self, *args, action, file, as_json, **options):
        if action == "export":
            self._export(file, as_json=as_json)
        else:
            self._import(file, as_json=as_json)

    def _export(self, path: str | None, *, as_json: bool) -> None:
        text = _dumps(config_export())
        if path is None or path == "-":
            self.stdout.write(text, ending="")
            return
        directory = os.path.dirname(os.path.abspath(path))
        # Written beside the target and renamed: a failed export never leaves half a file, nor the
        # temporary one (it holds the whole configuration).
        handle = None
        try:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False, suffix=".tmp") as handle:
                handle.write(text)
            os.replace(handle.name, path)
        except OSError as error:
            if handle is not None and os.path.exists(handle.name):
                os.unlink(handle.name)
            raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
        data = json.loads(text)
        sizes = {section: len(data[section]) for section in SECTIONS}
        if as_json:
            self.stdout.write(_dumps({"file": path, "items": sizes}), ending="")
        else:
            self.stdout.write(f"wrote {path}: " + ", ".join(f"{n} {section}" for section, n in sizes.items()))

    def _import(self, path: str | None, *, as_json: bool) -> None:
        if not path:
            raise CommandError("import needs a FILE (the JSON written by `cezbek_config export`)")
        try:
            if path == "-":
                raw = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as handle:
                    raw = handle.read()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path}: not UTF-8 text") from None
        try:
            data = json.loads(raw, object_pairs_hook=object_without_repeats)
        except ValueError as error:
            raise CommandError(f"{path}: not valid JSON: {error}") from None
        try:
            counts = config_import(data)
        except ValidationFailed as error:
            raise CommandError(_one_line(f"{path}: refused, nothing changed: {error.message}")) from None
        except NotShared as error:
            raise CommandError(str(error)) from None
        if as_json:
            self.stdout.write(_dumps(counts), ending="")
            return
        for section, n in counts.items():
            self.stdout.write(f"{section:15} {n['created']} created, {n['updated']} updated, {n['archived']} archived")


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def _dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
