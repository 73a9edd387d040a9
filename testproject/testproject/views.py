"""The demo's pages: a landing page that explains the demo, and the chat page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from .demo_data import DEMO_USERS, demo_owners


def landing(request: HttpRequest) -> HttpResponse:
    """What the demo shows, who to log in as, and where everything is."""
    context = {
        "users": DEMO_USERS,
        "stores": list(settings.CONVSTORE),
        "owners": demo_owners(),
        "base_url": request.build_absolute_uri("/").rstrip("/"),
    }
    return render(request, "landing.html", context)


@login_required
@ensure_csrf_cookie
def chat(request: HttpRequest) -> HttpResponse:
    """Create conversations and append messages through ``/api/conversations/``."""
    return render(request, "chat.html")
