import json
from decimal import Decimal

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class DecimalJSONParser(JSONParser):
    """JSON with every number that has a fraction or exponent parsed as Decimal, never float."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json.loads(stream.read().decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        except RecursionError:  # nested deeper than the interpreter's stack: no purchase looks like that
            raise ParseError("Malformed JSON: nested too deeply.") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")
