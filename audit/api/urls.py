"""/api/v1/ (docs/API.md)."""
from django.http import JsonResponse
from django.urls import Resolver404, include, path, re_path, resolve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("models", views.ModelViewSet, basename="api-model")
router.register("versions", views.ModelVersionViewSet, basename="api-version")
router.register("datasets", views.DatasetViewSet, basename="api-dataset")
router.register("audits", views.AuditViewSet, basename="api-audit")
router.register(r"audits/(?P<audit_pk>\d+)/reviews", views.AuditReviewViewSet, basename="api-audit-review")
router.register("budgets", views.BudgetViewSet, basename="api-budget")



def not_found(request, rest=""):
    """Unknown paths under /api/v1/ answer JSON too (a slash left out gets a hint)."""
    detail = "Not found."
    if not request.path.endswith("/"):
        try:
            resolve(request.path + "/")
            detail = f"Not found. Did you mean {request.path}/ ?"
        except Resolver404:
            pass
    return JsonResponse({"detail": detail}, status=404)


urlpatterns = [
    path("audits/export.csv", views.AuditCsvExportView.as_view(), name="api-audit-export-csv"),
    path("audits/export.json", views.AuditJsonExportView.as_view(), name="api-audit-export-json"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # the split view serves its start-up script as a file: the CSP runs no inline script
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include(router.urls)),
    re_path(r"^(?P<rest>.*)$", not_found),
]
