from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cezbek import health
from cezbek.api import exception_handlers
from reports.dashboard_views import dashboard_view

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="reports-dashboard"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("cashback.urls")),
    path("api/v1/", include("loyalty.urls")),
    path("api/v1/", include("wallets.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
]

handler400 = exception_handlers.json_400
handler404 = exception_handlers.json_404
handler500 = exception_handlers.json_500
