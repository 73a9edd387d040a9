"""Forms of the admin section: the changelist search and the TTL editor."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from ..validation import MAX_ID_LENGTH

#: Largest TTL the form accepts: ten years, far beyond any sensible conversation lifetime.
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600


class ConversationSearchForm(forms.Form):
    """Search the changelist by conversation id prefix and/or exact owner."""

    q = forms.CharField(
        label=_("Conversation id starts with"), required=False, max_length=MAX_ID_LENGTH
    )
    owner = forms.CharField(label=_("Owner"), required=False, max_length=MAX_ID_LENGTH)

    def filters(self) -> dict[str, Any]:
        """``list_conversations`` keyword arguments (``prefix``/``owner``) for valid input."""
        data = self.cleaned_data if self.is_valid() else {}
        return {"prefix": data.get("q") or None, "owner": data.get("owner") or None}


class TTLForm(forms.Form):
    """Set a conversation's TTL in seconds from now; 0 makes it never expire."""

    ttl = forms.IntegerField(
        label=_("New TTL (seconds)"),
        min_value=0,
        max_value=MAX_TTL_SECONDS,
        help_text=_(
            "Counts as an update: the conversation will expire this many seconds "
            "from now. 0 = never expire."
        ),
        widget=forms.NumberInput(attrs={"class": "vIntegerField", "step": 1}),
    )
