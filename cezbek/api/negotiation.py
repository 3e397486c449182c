"""Content negotiation for the partner API: DRF's, with its answers for the usual request given without parsing."""

from rest_framework.negotiation import DefaultContentNegotiation


class UsualRequestNegotiation(DefaultContentNegotiation):
    """DRF's DefaultContentNegotiation, answering at once where its answer is known in advance.

    - Renderer: no query string (so no `?format=`), no format suffix, and an Accept header that is
      absent, `*/*` or exactly the first renderer's media type: DRF would pick that first renderer
      with its own media type. Anything else (an Accept with a list, parameters or q-values) goes
      through DRF's parsing, so 406 and `; indent=` behave as before.
    - Parser: a Content-Type exactly the first parser's media type: DRF would pick that parser.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request._request.META
        first = renderers[0] if renderers else None
        if (
            first is not None
            and not format_suffix
            and not meta.get("QUERY_STRING")
            and meta.get("HTTP_ACCEPT", "*/*") in ("*/*", first.media_type)
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)

    def select_parser(self, request, parsers):
        if parsers and request.content_type == parsers[0].media_type:
            return parsers[0]
        return super().select_parser(request, parsers)
