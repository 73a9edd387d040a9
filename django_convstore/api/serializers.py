"""Request and response shapes of the REST API.

The declared fields describe the shapes for the OpenAPI schema and the
browsable API. Input serializers do not re-implement any rule: their
``to_internal_value`` runs :mod:`django_convstore.validation`, the very
functions the store applies, and turns its ``InvalidInputError`` into DRF
field errors (``{"messages": {2: {"role": ["must be one of: ..."]}}}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.settings import api_settings

from .. import validation
from ..conf import app_settings
from ..exceptions import InvalidInputError
from ..types import Message
from .exceptions import field_errors, invalid_input

#: Conversation ids the API cannot address in a URL, so it will not create them.
RESERVED_IDS = frozenset({"stats"})

ID_HELP = (
    "1-255 characters, no control characters. Ids created through the API may not contain "
    "'/' and may not be 'stats' (neither could be addressed in a URL)."
)
TTL_HELP = "Seconds; 0 = never expires; omitted or null = the store's default TTL."


def validate_api_conversation_id(value: Any) -> str:
    """A conversation id the API can create: the store's rule, plus URL-addressability."""
    cid = validation.validate_conversation_id(value)
    if "/" in cid:
        raise InvalidInputError(
            "conversation_id", "must not contain '/' (it could not be addressed in a URL)."
        )
    if cid in RESERVED_IDS:
        raise InvalidInputError("conversation_id", f"{cid!r} is reserved by the REST API.")
    return cid


def checked_ttl(value: Any) -> int | None:
    """Validate a TTL but keep it raw: 0 must reach ``save`` as 0 (never), not None (default)."""
    validation.validate_ttl(value)
    return value


def optional_metadata(value: Any) -> dict[str, Any] | None:
    """Custom metadata to merge, or None (null) for "no change"."""
    return None if value is None else validation.validate_metadata(value)


def _not_a_dict(serializer: serializers.Serializer[Any], data: Any) -> serializers.ValidationError:
    message = serializer.error_messages["invalid"].format(datatype=type(data).__name__)
    return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})


class ValidatedSerializer(serializers.Serializer):
    """Runs one validation function per present field and reports every failing field."""

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """Map each field to a thunk that validates it (subclasses implement)."""
        raise NotImplementedError

    def required_error(self, name: str) -> list[str]:
        """DRF's usual "This field is required." for ``name``."""
        return [str(self.fields[name].error_messages["required"])]

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Clean values of the present fields, or ``ValidationError`` naming every bad one."""
        if not isinstance(data, Mapping):
            raise _not_a_dict(self, data)
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        missing: dict[str, list[str]] = {}
        for name, check in self.field_checks(data).items():
            if name not in data:
                if self.fields[name].required and not self.partial:
                    missing[name] = self.required_error(name)
                continue
            try:
                values[name] = check()
            except InvalidInputError as exc:
                for path, messages in exc.errors.items():
                    errors.setdefault(path, []).extend(messages)
        if errors or missing:
            raise serializers.ValidationError({**field_errors(errors), **missing})
        return values


class MessageInputSerializer(serializers.Serializer):
    """A message to store; ``id`` and ``timestamp`` are generated when missing."""

    id = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        max_length=255,
        help_text="Generated when missing.",
    )
    role = serializers.ChoiceField(choices=(), help_text="One of CONVSTORE_ROLES.")
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
    timestamp = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="Milliseconds since the epoch; now when missing.",
    )
    metadata = serializers.DictField(required=False, allow_null=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = list(app_settings.ROLES)  # type: ignore[attr-defined]

    def to_internal_value(self, data: Any) -> Message:
        """A valid :class:`Message` (see :func:`validation.validate_message`)."""
        try:
            return validation.validate_message(data, "message")
        except InvalidInputError as exc:
            raise invalid_input(exc, strip="message") from None


class ConversationSaveSerializer(ValidatedSerializer):
    """Body of ``PUT conversations/{id}/``: replace the messages (like ``store.save``)."""

    messages = MessageInputSerializer(many=True, help_text="At most CONVSTORE_MAX_BATCH messages.")
    ttl = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text=TTL_HELP
    )
    metadata = serializers.DictField(
        required=False, allow_null=True, help_text="Custom metadata, merged over the existing one."
    )

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """The store's rules for messages, ttl and metadata."""
        return {
            "messages": lambda: validation.validate_messages(data["messages"]),
            "ttl": lambda: checked_ttl(data["ttl"]),
            "metadata": lambda: optional_metadata(data["metadata"]),
        }


class ConversationCreateSerializer(ConversationSaveSerializer):
    """Body of ``POST conversations/``: like PUT, with an optional id."""

    conversation_id = serializers.CharField(
        required=False,
        min_length=1,
        max_length=255,
        help_text=ID_HELP + " Generated when missing.",
    )

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """The id rule, then the PUT rules."""
        return {
            "conversation_id": lambda: validate_api_conversation_id(data["conversation_id"]),
            **super().field_checks(data),
        }


class ConversationPatchSerializer(ValidatedSerializer):
    """Body of ``PATCH conversations/{id}/``: change custom metadata and/or the TTL only."""

    ttl = serializers.IntegerField(
        required=False, min_value=0, help_text="Seconds from now; 0 = never expires."
    )
    metadata = serializers.DictField(
        required=False, allow_null=True, help_text="Custom metadata, merged over the existing one."
    )

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """A required TTL (``set_ttl``'s rule) and the metadata rule."""
        return {
            "ttl": lambda: self._ttl(data["ttl"]),
            "metadata": lambda: optional_metadata(data["metadata"]),
        }

    @staticmethod
    def _ttl(value: Any) -> int:
        if value is None:
            raise InvalidInputError("ttl", "is required (use 0 for no expiry).")
        validation.validate_ttl(value)
        return value


class AppendSerializer(ValidatedSerializer):
    """Body of ``POST conversations/{id}/messages/`` in its list form."""

    messages = MessageInputSerializer(many=True, help_text="At most CONVSTORE_MAX_BATCH messages.")

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """The store's batch rule."""
        return {"messages": lambda: validation.validate_messages(data["messages"])}


class TTLSerializer(ValidatedSerializer):
    """Body of ``PUT conversations/{id}/ttl/``."""

    ttl = serializers.IntegerField(min_value=0, help_text="Seconds from now; 0 = never expires.")

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """``set_ttl``'s rule."""
        return {"ttl": lambda: ConversationPatchSerializer._ttl(data["ttl"])}


def parse_append_body(data: Any) -> list[Message]:
    """The messages of an append body: ``{"messages": [...]}`` or one message object."""
    if isinstance(data, Mapping) and "messages" in data:
        serializer: serializers.Serializer[Any] = AppendSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        messages: list[Message] = serializer.validated_data["messages"]
        return messages
    serializer = MessageInputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return [serializer.validated_data]


# -- response shapes (documentation; views return the types' ``to_dict()``) ---------------


class MessageSerializer(serializers.Serializer):
    """A stored message."""

    id = serializers.CharField()
    role = serializers.CharField()
    content = serializers.CharField(allow_blank=True)
    timestamp = serializers.IntegerField(help_text="Milliseconds since the epoch.")
    metadata = serializers.DictField()


class ConversationMetadataSerializer(serializers.Serializer):
    """Everything about a conversation except its messages."""

    conversation_id = serializers.CharField()
    created_at = serializers.IntegerField(help_text="Milliseconds since the epoch.")
    updated_at = serializers.IntegerField(help_text="Milliseconds since the epoch.")
    message_count = serializers.IntegerField()
    ttl = serializers.IntegerField(allow_null=True, help_text="Seconds; null = never expires.")
    owner = serializers.CharField(allow_null=True, help_text="Primary key of the owning user.")
    metadata = serializers.DictField(help_text="Custom metadata.")
    expires_at = serializers.IntegerField(
        allow_null=True, help_text="Milliseconds since the epoch; null = never."
    )


class ConversationSerializer(serializers.Serializer):
    """A conversation with its (possibly windowed, see ``?last=``) messages."""

    conversation_id = serializers.CharField()
    messages = MessageSerializer(many=True)
    metadata = ConversationMetadataSerializer()


class TTLResponseSerializer(serializers.Serializer):
    """Remaining lifetime, as ``get_ttl`` reports it."""

    ttl = serializers.IntegerField(help_text="Remaining seconds; -1 = never expires.")


class StoreStatsSerializer(serializers.Serializer):
    """Counts over the whole store."""

    total_conversations = serializers.IntegerField()
    total_messages = serializers.IntegerField()
    expired_conversations = serializers.IntegerField(allow_null=True)
    storage_size = serializers.IntegerField(allow_null=True, help_text="Bytes, where known.")


class MessagePageSerializer(serializers.Serializer):
    """A window of a conversation's messages, oldest first (DRF's limit/offset page shape)."""

    count = serializers.IntegerField(help_text="How many messages the conversation has.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MessageSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    """An error with a human-readable detail."""

    detail = serializers.CharField()
