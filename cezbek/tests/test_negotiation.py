"""The partner API's content negotiation answers as DRF's does, and skips DRF's parsing only for
the usual request (no Accept or a plain one, no query string, JSON body)."""

import pytest
from django.http import Http404
from django.test import RequestFactory
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request

from cezbek.api.negotiation import UsualRequestNegotiation
from cezbek.api.parsers import DecimalJSONParser

RENDERER_LISTS = [[JSONRenderer()], [JSONRenderer(), BrowsableAPIRenderer()], [BrowsableAPIRenderer(), JSONRenderer()]]
PARSER_LISTS = [[DecimalJSONParser()], [FormParser(), DecimalJSONParser()]]
ACCEPTS = [
    None, "*/*", "application/json", "application/json; indent=4", "application/*", "text/html",
    "text/html, application/json;q=0.9", "application/json, */*", "image/png", "",
]
QUERIES = ["", "format=json", "format=api", "page_size=2"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded", "text/plain", ""]


def _request(*, accept=None, query="", content_type="application/json") -> Request:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    path = "/api/v1/cashbacks" + (f"?{query}" if query else "")
    return Request(RequestFactory().post(path, b"{}", content_type=content_type, **headers))


def _renderer_choice(negotiation, request, renderers, suffix):
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except NotAcceptable:
        return "406"
    except Http404:  # a format no renderer has
        return "404"
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_LISTS, ids=lambda r: "+".join(type(x).__name__ for x in r))
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("suffix", [None, "json"])
def test_the_renderer_is_drfs_choice(renderers, query, suffix):
    for accept in ACCEPTS:
        request = _request(accept=accept, query=query)
        assert _renderer_choice(UsualRequestNegotiation(), request, renderers, suffix) == _renderer_choice(
            DefaultContentNegotiation(), request, renderers, suffix
        ), accept


@pytest.mark.parametrize("parsers", PARSER_LISTS, ids=lambda p: "+".join(type(x).__name__ for x in p))
def test_the_parser_is_drfs_choice(parsers):
    for content_type in CONTENT_TYPES:
        request = _request(content_type=content_type)
        assert UsualRequestNegotiation().select_parser(request, parsers) is DefaultContentNegotiation().select_parser(
            request, parsers
        ), content_type


def test_the_usual_request_is_answered_without_drfs_parsing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("DRF's negotiation ran for the usual request")

    monkeypatch.setattr(DefaultContentNegotiation, "select_renderer", refuse)
    monkeypatch.setattr(DefaultContentNegotiation, "select_parser", refuse)
    renderers, parsers = [JSONRenderer()], [DecimalJSONParser()]
    negotiation = UsualRequestNegotiation()
    for accept in (None, "*/*", "application/json"):
        request = _request(accept=accept)
        assert negotiation.select_renderer(request, renderers) == (renderers[0], "application/json")
        assert negotiation.select_parser(request, parsers) is parsers[0]


def test_the_api_uses_it(settings):
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is UsualRequestNegotiation
