from django.urls import path

from cashback.apis import CashbackCollectionApi, CashbackDetailApi
from cashback.batch_apis import BatchCollectionApi, BatchDetailApi, BatchResultsApi

urlpatterns = [
    path("cashbacks", CashbackCollectionApi.as_view(), name="cashbacks"),
    path("cashbacks/<str:kezbek_ref>", CashbackDetailApi.as_view(), name="cashback-detail"),
    path("batches", BatchCollectionApi.as_view(), name="batches"),
    path("batches/<str:batch_id>", BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<str:batch_id>/results", BatchResultsApi.as_view(), name="batch-results"),
]
