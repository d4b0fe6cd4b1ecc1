from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from .views import audits, pages

urlpatterns = [
    path("", pages.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("models/", pages.model_list, name="model-list"),
    path("models/upload/", pages.model_upload, name="model-upload"),
    path("models/<int:pk>/", pages.model_detail, name="model-detail"),
    path("versions/<int:version_pk>/audits/", audits.audit_create, name="audit-create"),
    path("datasets/", pages.dataset_list, name="dataset-list"),
    path("audits/", audits.audit_list, name="audit-list"),
    path("audits/<int:pk>/", audits.audit_detail, name="audit-detail"),
    path("audits/<int:pk>/progress/", audits.audit_progress, name="audit-progress"),
    path("audits/<int:pk>/cancel/", audits.audit_cancel_view, name="audit-cancel"),
    path("healthz", audits.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
