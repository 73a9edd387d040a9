"""Who may use the API, and as which owner each request acts.

All decisions live in one replaceable class, :class:`OwnerScope`. A
conversation's ``owner`` is the creating user's primary key (as a string).
Every store call of the API carries an ``owner``: the user's own, so the
store itself keeps others' conversations out of reach (they answer 404,
exactly as if they did not exist), or ``None`` (unscoped) for a user who holds
the cross-owner permission for that kind of access. The permissions are the
admin's, on the ``Conversation`` model:

- ``view`` (list, read, message windows, TTL, ``stats/``): ``view_conversation`` or
  ``change_conversation``;
- ``change`` (replace, append, metadata, TTL, pop, truncate): ``change_conversation``;
- ``delete``: ``delete_conversation``

(all ``django_convstore.``-prefixed; superusers have them all). Being staff
grants nothing by itself.

To change the rules, subclass :class:`OwnerScope` and either name it in the
setting ``CONVSTORE_API_SCOPE_CLASS`` (a dotted path, read at request time)
or set ``scope_class`` on a ``ConversationViewSet`` subclass (which wins over
the setting). For example, a scope where members of a "support" group act on
every conversation::

    class SupportScope(OwnerScope):
        def sees_everything(self) -> bool:
            return super().sees_everything() or self.user.groups.filter(name="support").exists()
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

if TYPE_CHECKING:
    from rest_framework.views import APIView

SCOPE_SETTING = "CONVSTORE_API_SCOPE_CLASS"
DEFAULT_SCOPE_CLASS = "django_convstore.api.permissions.OwnerScope"

#: A kind of access to other owners' conversations.
Access = Literal["view", "change", "delete"]

#: The Django permissions that each grant cross-owner ``Access`` (any one of them suffices).
CROSS_OWNER_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "view": ("django_convstore.view_conversation", "django_convstore.change_conversation"),
    "change": ("django_convstore.change_conversation",),
    "delete": ("django_convstore.delete_conversation",),
}


class OwnerScope:
    """The default rules: users act as themselves; Django permissions grant cross-owner access."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.user: Any = request.user
        self._granted: dict[str, bool] = {}

    def has_access(self) -> bool:
        """May this request use the API at all? (Default: authenticated users.)"""
        return bool(self.user is not None and self.user.is_authenticated)

    def sees_everything(self) -> bool:
        """Does this user hold every cross-owner power? (Default: no; a hook for subclasses.)"""
        return False

    def cross_owner(self, access: Access) -> bool:
        """May this user ``access`` (view/change/delete) other owners' conversations?"""
        if access not in self._granted:
            permissions = CROSS_OWNER_PERMISSIONS[access]
            self._granted[access] = self.has_access() and (
                self.sees_everything() or any(self.user.has_perm(p) for p in permissions)
            )
        return self._granted[access]

    def owner_id(self) -> str:
        """The owner value of this user's conversations: the primary key as a string."""
        return str(self.user.pk)

    def owner_for(self, access: Access) -> str | None:
        """The ``owner=`` for store calls of this kind: None (unscoped) or :meth:`owner_id`."""
        return None if self.cross_owner(access) else self.owner_id()

    def may_view_stats(self) -> bool:
        """May this user read ``stats/``? (Default: cross-owner view.) If not, 403."""
        return self.cross_owner("view")


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
    There are no object permissions: every store call carries the owner the
    request acts as, and the store treats other owners' conversations as
    missing, atomically.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        """Authenticated (per the scope), and cross-owner view for the stats action."""
        scope: OwnerScope = view.get_scope()  # type: ignore[attr-defined]
        if not scope.has_access():
            return False
        if getattr(view, "action", None) == "stats":
            return scope.may_view_stats()
        return True
