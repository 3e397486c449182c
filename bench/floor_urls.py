"""The URLconf of `floor_settings` (bench/floor.py): a plain Django view and a DRF view, each
reading a JSON body and answering 201 with a document of the purchase's size."""

import json

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from floor_app import DOCUMENT
from rest_framework.response import Response
from rest_framework.views import APIView


@csrf_exempt
def plain(request):
    json.loads(request.body)
    return JsonResponse(DOCUMENT, status=201)


class Drf(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    def post(self, request):
        request.data  # parsed by the project's JSON parser
        return Response(DOCUMENT, status=201)


urlpatterns = [path("floor/django", plain), path("floor/drf", Drf.as_view())]
