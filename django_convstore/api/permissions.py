"""Who may use the API and which conversations each user sees.

All decisions live in one replaceable class, :class:`OwnerScope`: a
conversation's ``owner`` is the creating user's primary key (as a string);
non-staff users see, change and delete only their own conversations (anything
else answers 404, exactly as if it did not exist); staff see everything and
may read the store's stats.

To change the rules, subclass :class:`OwnerScope` and either name it in the
setting ``CONVSTORE_API_SCOPE_CLASS`` (a dotted path, read at request time)
or set ``scope_class`` on a ``ConversationViewSet`` subclass (which wins over
the setting). For example, a scope where members of a "support" group see
every conversation::

    class SupportScope(OwnerScope):
        def sees_everything(self) -> bool:
            return super().sees_everything() or self.user.groups.filter(name="support").exists()
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..types import ConversationMetadata

if TYPE_CHECKING:
    from rest_framework.views import APIView

SCOPE_SETTING = "CONVSTORE_API_SCOPE_CLASS"
DEFAULT_SCOPE_CLASS = "django_convstore.api.permissions.OwnerScope"


class OwnerScope:
    """The default rules: authenticated users own what they create; staff see everything."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.user: Any = request.user

    def has_access(self) -> bool:
        """May this request use the API at all? (Default: authenticated users.)"""
        return bool(self.user is not None and self.user.is_authenticated)

    def sees_everything(self) -> bool:
        """Does this user see every conversation? (Default: staff.)"""
        return bool(self.has_access() and self.user.is_staff)

    def owner_id(self) -> str:
        """The owner value of this user's conversations: the primary key as a string."""
        return str(self.user.pk)

    def owner_for_new(self) -> str:
        """The owner recorded on conversations this user creates."""
        return self.owner_id()

    def owner_filter(self) -> str | None:
        """The ``owner`` to filter listings by; None lists every conversation."""
        return None if self.sees_everything() else self.owner_id()

    def allows(self, metadata: ConversationMetadata) -> bool:
        """May this user see and change this conversation? If not, it answers 404."""
        return self.sees_everything() or metadata.owner == self.owner_id()

    def may_view_stats(self) -> bool:
        """May this user read ``conversations/stats/``? (Default: staff.) If not, 403."""
        return self.sees_everything()


@lru_cache(maxsize=8)
def _import_scope(path: str) -> type[OwnerScope]:
    try:
        scope_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{SCOPE_SETTING}: could not import {path!r}: {exc}") from exc
    if not (isinstance(scope_class, type) and issubclass(scope_class, OwnerScope)):
        raise ImproperlyConfigured(f"{SCOPE_SETTING}: {path!r} is not an OwnerScope subclass.")
    return scope_class


def get_scope_class() -> type[OwnerScope]:
    """The scope class named by ``CONVSTORE_API_SCOPE_CLASS`` (default :class:`OwnerScope`)."""
    return _import_scope(getattr(settings, SCOPE_SETTING, DEFAULT_SCOPE_CLASS))


class ConversationPermission(BasePermission):
    """Lets a request in when its scope grants access; ``stats`` also needs ``may_view_stats``.

    The view must provide ``get_scope()`` (as ``ConversationViewSet`` does).
    Per-conversation checks are not object permissions: the view answers 404
    for conversations the scope does not allow, so nothing leaks.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        """Authenticated (per the scope), and staff for the stats action."""
        scope: OwnerScope = view.get_scope()  # type: ignore[attr-defined]
        if not scope.has_access():
            return False
        if getattr(view, "action", None) == "stats":
            return scope.may_view_stats()
        return True
