from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from .views import audits, pages, reports
from .views import reviews as review_views

urlpatterns = [
    path("", reports.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("models/", pages.model_list, name="model-list"),
    path("models/upload/", pages.model_upload, name="model-upload"),
    path("models/<int:pk>/", pages.model_detail, name="model-detail"),
    path("models/<int:pk>/history/", reports.model_history, name="model-history"),
    path("versions/<int:version_pk>/audits/", audits.audit_create, name="audit-create"),
    path("datasets/", pages.dataset_list, name="dataset-list"),
    path("audits/", audits.audit_list, name="audit-list"),
    path("audits/<int:pk>/", reports.audit_detail, name="audit-detail"),
    path("audits/<int:pk>/progress/", audits.audit_progress, name="audit-progress"),
    path("audits/<int:pk>/cancel/", audits.audit_cancel_view, name="audit-cancel"),
    path("compare/", reports.compare, name="compare"),
    path("badges/<int:version_id>.svg", reports.badge, name="badge"),
    path("badges/a/<str:token>.svg", reports.public_badge, name="badge-public"),
    path("audits/<int:pk>/badge-link/", reports.badge_link, name="audit-badge-link"),
    path("audits/<int:pk>/reviews/", review_views.audit_review, name="audit-review"),
    path("reviews/", review_views.review_queue, name="review-queue"),
    path("budgets/", review_views.budget_list, name="budget-list"),
    path("budgets/<int:pk>/toggle/", review_views.budget_toggle, name="budget-toggle"),
    path("budgets/<int:pk>/delete/", review_views.budget_remove, name="budget-delete"),
    path("account/", review_views.account, name="account"),
    path("api/v1/", include("audit.api.urls")),
    path("healthz", audits.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
