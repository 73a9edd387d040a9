"""Display values of the admin pages: times, TTLs, JSON, titles and owners.

Everything here returns plain text or data for templates, which escape it;
nothing is marked safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.timesince import timeuntil
from django.utils.translation import gettext as _

from ..types import ConversationMetadata

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

#: Strings longer than this are abridged in JSON shown on a page (base64 images, long texts).
MAX_SHOWN_STRING = 400


def ms_to_datetime(value: int | None) -> datetime | None:
    """An aware UTC datetime for a millisecond timestamp (templates localise it)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def expires_in(metadata: ConversationMetadata, now: datetime | None = None) -> str:
    """ "never", "expired" or a human duration such as "1 hour, 59 minutes"."""
    expires_at = ms_to_datetime(metadata.expires_at)
    if expires_at is None:
        return _("never")
    now = now or datetime.now(tz=timezone.utc)
    if expires_at <= now:
        return _("expired")
    return timeuntil(expires_at, now)


def describe_ttl(ttl: int | None) -> str:
    """A TTL in words: "never expires" or "3600 seconds (1 hour)"."""
    if not ttl:
        return _("never expires")
    now = datetime.now(tz=timezone.utc)
    human = timeuntil(datetime.fromtimestamp(now.timestamp() + ttl, tz=timezone.utc), now)
    return _("%(seconds)s seconds (%(human)s)") % {"seconds": ttl, "human": human}


def abridged(value: Any, limit: int = MAX_SHOWN_STRING) -> Any:
    """JSON data with every string longer than ``limit`` cut, saying how long it was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return _("%(start)s… (%(count)s characters)") % {
            "start": value[: limit // 2],
            "count": len(value),
        }
    if isinstance(value, dict):
        return {key: abridged(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [abridged(item, limit) for item in value]
    return value


def pretty_json(value: Any, *, abridge: bool = False) -> str:
    """Indented, key-sorted JSON for ``<pre>`` blocks (non-ASCII kept readable)."""
    shown = abridged(value) if abridge else value
    return json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False)


def title_of(metadata: ConversationMetadata) -> str:
    """The conversation's ``title`` from its custom metadata, or "" when it has none."""
    title = metadata.metadata.get("title")
    return title.strip() if isinstance(title, str) else ""


@dataclass(frozen=True)
class OwnerDisplay:
    """How an owner value is shown: a user's name (linked to the user admin) or the raw value."""

    value: str
    label: str
    url: str = ""

    @property
    def is_raw(self) -> bool:
        """True when no user was found for the value (the label is the value itself)."""
        return self.label == self.value and not self.url


def user_owners(
    values: Iterable[str | None], *, request: HttpRequest, admin_site: AdminSite
) -> dict[str, OwnerDisplay]:
    """Owner values as Django users: ``{value: OwnerDisplay}`` for every non-empty value.

    The REST API records ``str(user.pk)`` as the owner. With
    ``django.contrib.auth`` installed, values that are primary keys of
    existing users show the username, linked to the user's admin page when
    the user model is registered in ``admin_site`` and the viewer may see it.
    Other values show as they are. One query for the whole page.
    """
    wanted = {value for value in values if value}
    shown = {value: OwnerDisplay(value, value) for value in wanted}
    if not wanted or not apps.is_installed("django.contrib.auth"):
        return shown
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    pk_field = user_model._meta.pk
    assert pk_field is not None
    keys = {}
    for value in wanted:
        try:
            keys[value] = pk_field.to_python(value)
        except (ValidationError, ValueError, TypeError):
            continue
    if not keys:
        return shown
    found = user_model._default_manager.filter(pk__in=keys.values())
    users = {str(user.pk): user for user in found}
    model_admin = admin_site._registry.get(user_model)
    for value in keys:
        user = users.get(value)
        if user is None:
            continue
        url = ""
        if model_admin is not None and model_admin.has_view_or_change_permission(request, user):
            opts = user_model._meta
            try:
                url = reverse(
                    f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                    args=[quote(user.pk)],
                    current_app=admin_site.name,
                )
            except NoReverseMatch:
                url = ""
        shown[value] = OwnerDisplay(value, str(user.get_username()), url)
    return shown
