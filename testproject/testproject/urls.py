"""URLs of the demo project."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("admin/", admin.site.urls),
]
