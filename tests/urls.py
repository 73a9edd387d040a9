"""URLs for the test suite: the admin and the REST API, as a project would mount them."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
