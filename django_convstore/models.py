"""Models of django-convstore.

``Conversation`` is unmanaged and has no table: it anchors the admin section
(and Django's view/change/delete permissions) for conversations that live in
whatever backend a store uses. The database backend's own tables are defined
below it.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .fields import JSONTextField


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


class StoredConversation(models.Model):
    """One conversation of the database backend: its metadata and message counters.

    Timestamps are milliseconds since the epoch, as everywhere in the app;
    ``expires_at`` (``updated_at + ttl * 1000``, NULL when it never expires)
    is kept in sync by the store so listing and cleanup can filter on it.
    ``metadata`` is JSON kept as text (see :mod:`django_convstore.fields`), so
    it reads back exactly as written on every database.
    """

    namespace = models.CharField(_("namespace"), max_length=255)
    conversation_id = models.CharField(_("conversation id"), max_length=255)
    # NULL, not "", is "no owner": an owner id is never empty and NULL says so plainly.
    owner = models.CharField(_("owner"), max_length=255, null=True, blank=True)  # noqa: DJ001
    created_at = models.BigIntegerField(_("created at (ms)"))
    updated_at = models.BigIntegerField(_("updated at (ms)"))
    ttl = models.PositiveBigIntegerField(_("TTL (seconds)"), null=True, blank=True)
    expires_at = models.BigIntegerField(_("expires at (ms)"), null=True, blank=True)
    message_count = models.PositiveIntegerField(_("message count"), default=0)
    #: The position the next appended message gets. Positions only grow (an append
    #: that skips ids already present, a ``pop`` or a replacement leaves gaps), so
    #: ``ORDER BY position`` is the conversation's order.
    next_position = models.PositiveBigIntegerField(_("next position"), default=0)
    metadata = JSONTextField(_("metadata"), default=dict, blank=True)

    class Meta:
        verbose_name = _("stored conversation")
        verbose_name_plural = _("stored conversations")
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "conversation_id"], name="convstore_conv_ns_id_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["namespace", "-updated_at"], name="convstore_conv_ns_updated"),
            models.Index(
                fields=["namespace", "owner", "-updated_at"], name="convstore_conv_ns_owner"
            ),
            models.Index(fields=["namespace", "expires_at"], name="convstore_conv_ns_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}:{self.conversation_id}"


class StoredMessage(models.Model):
    """One message of a :class:`StoredConversation`.

    ``document`` is the whole message as one JSON object, written and read by
    :mod:`django_convstore.codec` (a load decodes all of a conversation's
    documents in one call). ``message_id`` repeats the message's id for the
    unique (conversation, message id) constraint that makes appends idempotent.
    """

    conversation = models.ForeignKey(
        StoredConversation,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("conversation"),
        # The unique (conversation, position) index below serves lookups by conversation.
        db_index=False,
    )
    position = models.PositiveBigIntegerField(_("position"))
    message_id = models.CharField(_("message id"), max_length=255)
    document = models.TextField(_("document (JSON)"))

    class Meta:
        verbose_name = _("stored message")
        verbose_name_plural = _("stored messages")
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "position"], name="convstore_msg_conv_pos_uniq"
            ),
            models.UniqueConstraint(
                fields=["conversation", "message_id"], name="convstore_msg_conv_id_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.position}"
