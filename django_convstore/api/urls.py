"""Routes of the REST API: ``path("api/", include("django_convstore.api.urls"))``.

URL names (namespace ``convstore_api``): ``conversation-list``,
``conversation-detail``, ``conversation-messages``, ``conversation-pop``,
``conversation-truncate``, ``conversation-ttl`` and ``conversation-stats``.

Every route also answers without its trailing slash (``POST conversations``
works like ``POST conversations/``), so a client that leaves it off never
meets Django's ``APPEND_SLASH`` redirect, which cannot carry a POST body.
``reverse()`` gives the canonical form, with the slash.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path
from rest_framework.routers import SimpleRouter

from .views import ConversationViewSet

app_name = "convstore_api"

router = SimpleRouter()
router.register("conversations", ConversationViewSet, basename="conversation")

# The same API under the slash-less URLs, left out of the OpenAPI schema (documented once);
# the same class name, so the browsable API names its pages alike.
_WithoutSlash = type(
    ConversationViewSet.__name__,
    (ConversationViewSet,),
    {"__doc__": ConversationViewSet.__doc__, "__module__": __name__, "schema": None},
)

_without_slash = SimpleRouter(trailing_slash=False)
_without_slash.register("conversations", _WithoutSlash, basename="conversation")


def _unnamed(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """The same routes without names, so ``reverse()`` only ever builds the canonical URLs."""
    return [
        re_path(str(pattern.pattern), pattern.callback)
        for pattern in patterns
        if isinstance(pattern, URLPattern)
    ]


urlpatterns = router.urls + _unnamed(_without_slash.urls)
