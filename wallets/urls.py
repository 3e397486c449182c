from django.urls import path

from wallets.apis import ProviderCallbackApi

urlpatterns = [path("providers/<str:code>/callback", ProviderCallbackApi.as_view(), name="provider-callback")]
