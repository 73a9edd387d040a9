"""Routes of the REST API: ``path("api/", include("django_convstore.api.urls"))``.

URL names (namespace ``convstore_api``): ``conversation-list``,
``conversation-detail``, ``conversation-messages``, ``conversation-ttl`` and
``conversation-stats``.
"""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import ConversationViewSet

app_name = "convstore_api"

router = SimpleRouter()
router.register("conversations", ConversationViewSet, basename="conversation")

urlpatterns = router.urls
