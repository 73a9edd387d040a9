"""Request and response shapes of the REST API.

The declared fields describe the shapes for the OpenAPI schema and the
browsable API. Input serializers do not re-implement any rule: their
``to_internal_value`` runs :mod:`django_convstore.validation`, the very
functions the store applies, and turns its ``InvalidInputError`` into DRF
field errors (``{"messages": {2: {"role": ["must be one of: ..."]}}}``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from .. import validation
from ..conf import app_settings
from ..exceptions import InvalidInputError
from ..types import Message
from .exceptions import field_errors, invalid_input

#: Conversation ids the API cannot address in a URL, so it will not create them: ``stats``
#: is the stats endpoint, and clients and servers resolve ``.`` and ``..`` path segments.
RESERVED_IDS = frozenset({"stats", ".", ".."})
#: The most ``pop`` may remove in one request, and the largest ``keep`` that means anything.
MAX_KEEP = 2**31 - 1

ID_HELP = (
    "1-255 characters, no control or Unicode format characters (bidi controls, zero-width "
    "characters). Ids created through the API may not contain '/' and may not be 'stats', "
    "'.' or '..' (none could be addressed in a URL)."
)
TTL_HELP = "Seconds; 0 = never expires; omitted or null = the store's default TTL."


def validate_api_conversation_id(value: Any, field: str = "conversation_id") -> str:
    """A conversation id the API may create: the store's rule, plus URL-addressability.

    Also refuses Unicode format characters (category Cf: bidi overrides,
    zero-width spaces and joiners …), which could make one id look like
    another in listings. The store itself accepts them, for migrations.
    """
    cid = validation.validate_identifier(value, field)
    if "/" in cid:
        raise InvalidInputError(
            field, "must not contain '/' (it could not be addressed in a URL)."
        )
    if cid in RESERVED_IDS:
        raise InvalidInputError(field, f"{cid!r} cannot be addressed through the REST API.")
    if any(unicodedata.category(ch) == "Cf" for ch in cid):
        raise InvalidInputError(
            field, "must not contain Unicode format characters (bidi controls, zero-width ones)."
        )
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
    """Runs one validation function per present field and reports every failing field.

    A key that is not one of the declared fields is an error too, named in
    the answer (``{"owner": ["Unknown field ..."]}``): a typo or a field
    the API does not take is never silently ignored.
    """

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """Map each field to a thunk that validates it (subclasses implement)."""
        raise NotImplementedError

    def required_error(self, name: str) -> list[str]:
        """DRF's usual "This field is required." for ``name``."""
        return [str(self.fields[name].error_messages["required"])]

    def unknown_errors(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        """An error for every key of ``data`` that is not a field of this serializer."""
        unknown = [key for key in data if key not in self.fields]
        if not unknown:
            return {}
        expected = ", ".join(sorted(self.fields))
        return {
            str(key): [f"Unknown field; this request takes only: {expected}."] for key in unknown
        }

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
        unknown = self.unknown_errors(data)
        if errors or missing or unknown:
            raise serializers.ValidationError({**field_errors(errors), **missing, **unknown})
        return values


# -- message fields -------------------------------------------------------------------------

CONTENT_PART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A content part, kept exactly as given: any JSON object with a string "
    '`type`, e.g. `{"type": "text", "text": ...}` or `{"type": "image_url", "image_url": '
    '{"url": ...}}`.',
    "properties": {"type": {"type": "string", "minLength": 1}},
    "required": ["type"],
    "additionalProperties": True,
}
CONTENT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "description": "Plain text."},
        {"type": "array", "items": CONTENT_PART_SCHEMA, "description": "Content parts."},
    ],
    "description": "A string, or a list of content parts (multimodal input).",
}
TOOL_CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'A tool call, kept exactly as given, e.g. OpenAI\'s `{"id", "type": '
    '"function", "function": {"name", "arguments"}}`.',
    "additionalProperties": True,
}


@extend_schema_field(CONTENT_SCHEMA)
class ContentField(serializers.Field):
    """A message's ``content``: a string or a list of content parts (documentation only)."""

    def to_representation(self, value: Any) -> Any:
        """The value as stored."""
        return value


class JSONObjectListField(serializers.ListField):
    """A list of JSON objects kept exactly (documentation only)."""

    child = serializers.DictField()


@extend_schema_field({"type": "array", "items": TOOL_CALL_SCHEMA})
class ToolCallsField(JSONObjectListField):
    """``tool_calls``: a list of tool-call objects."""


class MessageInputSerializer(serializers.Serializer):
    """A message to store; ``id`` and ``timestamp`` are generated when missing.

    ``content`` is a string or a list of content parts; assistant turns may
    carry ``tool_calls``, tool results a ``tool_call_id``, and any message a
    ``name``. Everything is stored and returned exactly as given.
    """

    id = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        max_length=255,
        help_text="Unique within the conversation: appending an id it already holds is "
        "skipped, so a retried append never duplicates a message. Generated when missing.",
    )
    role = serializers.ChoiceField(choices=(), help_text="One of CONVSTORE_ROLES.")
    content = ContentField()
    timestamp = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="Milliseconds since the epoch; now when missing.",
    )
    metadata = serializers.DictField(required=False, allow_null=True)
    name = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        help_text="The participant's or tool's name.",
    )
    tool_calls = ToolCallsField(required=False, allow_null=True, help_text="Assistant turns.")
    tool_call_id = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        help_text="Tool results: the id of the call this answers.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = list(app_settings.ROLES)  # type: ignore[attr-defined]

    def to_internal_value(self, data: Any) -> Message:
        """A valid :class:`Message` (see :func:`validation.validate_message`)."""
        try:
            return validation.validate_message(data, "message")
        except InvalidInputError as exc:
            raise invalid_input(exc, strip="message") from None


# -- request bodies --------------------------------------------------------------------------


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
            "ttl": lambda: required_ttl(data["ttl"]),
            "metadata": lambda: optional_metadata(data["metadata"]),
        }


def required_ttl(value: Any) -> int:
    """``set_ttl``'s rule: an int of seconds ≥ 0, not null (0 = never expires)."""
    if value is None:
        raise InvalidInputError("ttl", "is required (use 0 for no expiry).")
    validation.validate_ttl(value)
    return int(value)


class AppendSerializer(ValidatedSerializer):
    """Body of ``POST conversations/{id}/messages/`` in its list form."""

    messages = MessageInputSerializer(
        many=True,
        help_text="At most CONVSTORE_MAX_BATCH messages; ids the conversation already holds "
        "are skipped.",
    )

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """The store's batch rule."""
        return {"messages": lambda: validation.validate_messages(data["messages"])}


class TTLSerializer(ValidatedSerializer):
    """Body of ``PUT conversations/{id}/ttl/``."""

    ttl = serializers.IntegerField(min_value=0, help_text="Seconds from now; 0 = never expires.")

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """``set_ttl``'s rule."""
        return {"ttl": lambda: required_ttl(data["ttl"])}


class PopSerializer(ValidatedSerializer):
    """Body of ``POST conversations/{id}/pop/`` (may be empty: one message)."""

    count = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="How many of the newest messages to remove (default 1; at most "
        "CONVSTORE_MAX_BATCH). More than the conversation holds removes them all.",
    )

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """A count of 1 … ``CONVSTORE_MAX_BATCH``."""
        return {"count": lambda: pop_count(data["count"])}


def pop_count(value: Any) -> int:
    """An int of at least 1 and at most ``CONVSTORE_MAX_BATCH``."""
    count = validation.validate_positive_int(value, "count", minimum=1)
    limit = app_settings.MAX_BATCH
    if limit is not None and count > limit:
        raise InvalidInputError("count", f"at most {limit} messages per call.")
    return count


class TruncateSerializer(ValidatedSerializer):
    """Body of ``POST conversations/{id}/truncate/``."""

    keep = serializers.IntegerField(
        min_value=0,
        help_text="How many of the oldest messages to keep; the rest are removed. At or "
        "beyond the conversation's length nothing changes.",
    )

    def field_checks(self, data: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """An int ≥ 0 (values beyond any conversation's length mean "keep everything")."""
        return {
            "keep": lambda: min(
                validation.validate_positive_int(data["keep"], "keep", minimum=0), MAX_KEEP
            )
        }


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
    """A stored message; ``name``, ``tool_calls`` and ``tool_call_id`` appear only when set."""

    id = serializers.CharField()
    role = serializers.CharField()
    content = ContentField()
    timestamp = serializers.IntegerField(help_text="Milliseconds since the epoch.")
    metadata = serializers.DictField()
    name = serializers.CharField(required=False)
    tool_calls = ToolCallsField(required=False)
    tool_call_id = serializers.CharField(required=False)


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


class PoppedSerializer(serializers.Serializer):
    """The messages ``pop`` removed, oldest first."""

    messages = MessageSerializer(many=True)


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
