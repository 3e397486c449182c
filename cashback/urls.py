from django.urls import path

from cashback.apis import CashbackCollectionApi, CashbackDetailApi

urlpatterns = [
    path("cashbacks", CashbackCollectionApi.as_view(), name="cashbacks"),
    path("cashbacks/<str:kezbek_ref>", CashbackDetailApi.as_view(), name="cashback-detail"),
]
