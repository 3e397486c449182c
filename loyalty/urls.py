from django.urls import path

from loyalty.apis import CustomerTierApi

urlpatterns = [path("customers/<str:msisdn>/tier", CustomerTierApi.as_view(), name="customer-tier")]
