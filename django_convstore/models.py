"""Models of django-convstore.

``Conversation`` is unmanaged and has no table: it anchors the admin section
(and Django's view/change/delete permissions) for conversations that live in
whatever backend a store uses. The database backend's own tables are defined
below it.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Conversation(models.Model):
    """Admin anchor for conversations held by any store (no database table)."""

    conversation_id = models.CharField(_("conversation id"), max_length=255, primary_key=True)

    class Meta:
        managed = False
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        default_permissions = ("view", "change", "delete")

    def __str__(self) -> str:
        return self.conversation_id
