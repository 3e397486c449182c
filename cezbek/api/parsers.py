import json
from decimal import Decimal

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class DecimalJSONParser(JSONParser):
    """JSON with every number that has a fraction or exponent parsed as Decimal, never float."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json.loads(
                stream.read().decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant, object_pairs_hook=object_without_repeats
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        except RecursionError:  # nested deeper than the interpreter's stack: no purchase looks like that
            raise ParseError("Malformed JSON: nested too deeply.") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def object_without_repeats(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refused when it names a key twice: json would keep the last one silently, so
    `"amount": "100000.00", …, "amount": "5.00"` would be a purchase of 5.00 (0.4 µs a body)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {repeated!r} appears twice in one object")
    return data
