"""Turning user input into valid messages, ids, TTLs and metadata.

Every function either returns a clean value (always a fresh copy, never the
caller's object) or raises :class:`InvalidInputError` naming the field and the
rule. The REST API uses the same functions, so there is one source of truth.

Messages are checked in two passes. The fast pass builds ``Message`` structs
with ``msgspec.convert`` (in C) and runs the few rules msgspec cannot express
in a tight loop; when anything fails it, the slow pass walks the input in
Python and words every error with the exact field path
(``messages.3.metadata.a``). Both passes apply the same rules, so the result
never depends on which one ran.
"""

from __future__ import annotations

import math
import sys
import types
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Annotated, Any, Literal

import msgspec

from .clock import now_ms
from .conf import app_settings
from .exceptions import InvalidInputError
from .ids import new_message_id
from .types import Conversation, ConversationMetadata, Message

MAX_ID_LENGTH = 255
#: Largest timestamp (ms): 2**53 - 1 stays exact in JSON doubles, Lua numbers and JavaScript.
MAX_TIMESTAMP = 2**53 - 1
#: Largest TTL in seconds (about 68 years), so expiry arithmetic never overflows.
MAX_TTL = 2**31 - 1
MESSAGE_FIELDS = frozenset(
    {"id", "role", "content", "timestamp", "metadata", "name", "tool_calls", "tool_call_id"}
)
#: The original library's camelCase message keys that have a field of their own here.
ORIGINAL_MESSAGE_KEYS = {"toolCalls": "tool_calls", "toolCallId": "tool_call_id"}
_JSON_TYPES = "dict, list, str, int, float, bool or None"


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def _is_encodable(value: str) -> bool:
    """False for strings with lone surrogates, which no backend can store as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _max_depth() -> int:
    limit: int = app_settings.MAX_DEPTH
    return limit


def validate_identifier(value: Any, field: str = "conversation_id") -> str:
    """A conversation or message id: ``str``, 1-255 characters, no control characters."""
    # Printable ASCII has no control characters and no surrogates: the common case, quickly.
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and (value.isprintable())
    ):
        return value
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}.")
    if not value:
        raise InvalidInputError(field, "must not be empty.")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInputError(field, f"must be at most {MAX_ID_LENGTH} characters.")
    if _has_control_characters(value):
        raise InvalidInputError(field, "must not contain control characters.")
    if not _is_encodable(value):
        raise InvalidInputError(field, "must be valid Unicode (no lone surrogates).")
    return str(value)


def validate_conversation_id(value: Any) -> str:
    """A conversation id (see :func:`validate_identifier`)."""
    return validate_identifier(value, "conversation_id")


# -- JSON values (metadata, content parts, tool calls) ------------------------------------


class _NotPlain(Exception):
    """Raised by :func:`_plain_copy` for anything it does not copy itself."""


def _plain_copy(value: Any, depth: int) -> Any:
    """Copy plain JSON data nesting at most ``depth`` containers deep, or raise _NotPlain.

    The fast path of :func:`validate_json`; anything unusual (subclasses, NaN,
    lone surrogates, other types, too deep) goes the slow way, which decides
    and words the error.
    """
    kind = type(value)
    if kind is str:
        if value.isascii() or _is_encodable(value):
            return value
        raise _NotPlain
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _NotPlain
    if depth <= 0:
        raise _NotPlain
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _is_encodable(key)):
                raise _NotPlain
            copied[key] = _plain_copy(item, depth - 1)
        return copied
    if kind is list or kind is tuple:
        return [_plain_copy(item, depth - 1) for item in value]
    raise _NotPlain


def _checked_copy(value: Any, field: str, depth: int, limit: int) -> Any:
    """The slow, field-precise twin of :func:`_plain_copy`."""
    if isinstance(value, str):
        if not _is_encodable(value):
            raise InvalidInputError(field, "must be valid Unicode (no lone surrogates).")
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(field, "must be a finite number (no NaN or infinity).")
        return float(value)
    if isinstance(value, Mapping | list | tuple) and depth >= limit:
        raise InvalidInputError(
            field, f"nests deeper than {limit} levels (the CONVSTORE_MAX_DEPTH setting)."
        )
    if isinstance(value, Mapping):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(field, f"keys must be strings, not {type(key).__name__}.")
            if not _is_encodable(key):
                raise InvalidInputError(field, "keys must be valid Unicode (no lone surrogates).")
            copied[str(key)] = _checked_copy(item, f"{field}.{key}", depth + 1, limit)
        return copied
    if isinstance(value, list | tuple):
        return [
            _checked_copy(item, f"{field}.{index}", depth + 1, limit)
            for index, item in enumerate(value)
        ]
    raise InvalidInputError(
        field, f"must be JSON data ({_JSON_TYPES}), not {type(value).__name__}."
    )


def validate_json(value: Any, field: str) -> Any:
    """A copy of JSON data, nesting at most ``CONVSTORE_MAX_DEPTH`` levels.

    Rejects NaN and infinity, lone surrogates, non-string keys and anything
    that is not JSON data. A dict or list counts one level (``{"a": [1]}``
    nests 2 deep).
    """
    limit = _max_depth()
    try:
        return _plain_copy(value, limit)
    except (_NotPlain, RecursionError):
        pass
    try:
        return _checked_copy(value, field, 0, limit)
    except RecursionError:
        raise InvalidInputError(
            field, f"nests deeper than {limit} levels (the CONVSTORE_MAX_DEPTH setting)."
        ) from None


def validate_metadata(value: Any, field: str = "metadata") -> dict[str, Any]:
    """A JSON-serialisable dict with string keys (``None`` means empty); returns a copy."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(field, f"must be a dict, not {type(value).__name__}.")
    if not value:
        return {}
    copied: dict[str, Any] = validate_json(dict(value), field)
    return copied


def validate_content(value: Any, field: str = "content") -> str | list[dict[str, Any]]:
    """A string, or a list of content parts: JSON objects with a non-empty string ``type``."""
    if isinstance(value, str):
        if not _is_encodable(value):
            raise InvalidInputError(field, "must be valid Unicode (no lone surrogates).")
        return str(value)
    if not isinstance(value, list | tuple):
        raise InvalidInputError(
            field, f"must be a string or a list of content parts, not {type(value).__name__}."
        )
    for index, part in enumerate(value):
        _check_part(part, f"{field}.{index}")
    parts: list[dict[str, Any]] = validate_json(list(value), field)
    return parts


def _check_part(part: Any, field: str) -> None:
    if not isinstance(part, Mapping):
        raise InvalidInputError(
            field, f"must be a content part object (with a 'type'), not {type(part).__name__}."
        )
    kind = part.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidInputError(f"{field}.type", "must be a non-empty string.")


def validate_tool_calls(value: Any, field: str = "tool_calls") -> list[dict[str, Any]] | None:
    """``None`` or a list of JSON objects (kept exactly)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise InvalidInputError(field, f"must be a list of objects, not {type(value).__name__}.")
    for index, call in enumerate(value):
        if not isinstance(call, Mapping):
            raise InvalidInputError(
                f"{field}.{index}", f"must be an object, not {type(call).__name__}."
            )
    calls: list[dict[str, Any]] = validate_json(list(value), field)
    return calls


def _optional_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}.")
    if not value:
        raise InvalidInputError(field, "must not be empty (leave it out instead).")
    if not _is_encodable(value):
        raise InvalidInputError(field, "must be valid Unicode (no lone surrogates).")
    return str(value)


# -- scalars -------------------------------------------------------------------------------


def validate_timestamp(value: Any, field: str = "timestamp") -> int:
    """Milliseconds since the epoch: a non-negative int, or a ``datetime`` (converted)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = _make_aware(value)
        value = int(value.timestamp() * 1000)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, "must be an integer (ms since the epoch) or a datetime.")
    if value < 0:
        raise InvalidInputError(field, "must not be negative.")
    if value > MAX_TIMESTAMP:
        raise InvalidInputError(field, f"must be at most {MAX_TIMESTAMP} (ms since the epoch).")
    return int(value)


def _make_aware(value: datetime) -> datetime:
    """A naive datetime in Django's current time zone (UTC outside a configured Django)."""
    from django.conf import settings
    from django.utils import timezone

    if settings.configured:
        return timezone.make_aware(value)
    return value.replace(tzinfo=dt_timezone.utc)


def validate_ttl(value: Any, field: str = "ttl") -> int | None:
    """``None`` or an int ≥ 0 in seconds; 0 means "no expiry" and becomes ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, "must be an integer number of seconds or null.")
    if value < 0:
        raise InvalidInputError(field, "must not be negative (use 0 for no expiry).")
    if value > MAX_TTL:
        raise InvalidInputError(field, f"must be at most {MAX_TTL} seconds.")
    return int(value) or None


def validate_owner(value: Any, field: str = "owner") -> str | None:
    """``None`` or a string id of 1-255 characters."""
    if value is None:
        return None
    return validate_identifier(value, field)


def validate_positive_int(value: Any, field: str, *, minimum: int = 1) -> int:
    """An int ≥ ``minimum`` (for ``limit``, ``batch_size`` …)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, "must be an integer.")
    if value < minimum:
        raise InvalidInputError(field, f"must be at least {minimum}.")
    return int(value)


def validate_prefix(value: Any, field: str = "prefix") -> str | None:
    """``None`` or an id prefix (the empty string means no filter)."""
    if value is None or value == "":
        return None
    return validate_identifier(value, field)


# -- messages ------------------------------------------------------------------------------


def original_message(data: Mapping[str, Any]) -> dict[str, Any]:
    """A message of the TypeScript original in this project's shape, losing nothing.

    ``toolCalls``/``toolCallId`` become ``tool_calls``/``tool_call_id``; one
    content object (the original allowed a bare ``{type, data}``) becomes a
    one-part list; every other key without a field of its own (``sessionId``,
    ``functionCall`` …) is kept in ``metadata`` (under ``original:<key>`` if
    ``metadata`` already has that key).
    """
    result: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key in MESSAGE_FIELDS:
            result[key] = value
        elif key in ORIGINAL_MESSAGE_KEYS:
            result[ORIGINAL_MESSAGE_KEYS[key]] = value
        else:
            extra[str(key)] = value
    content = result.get("content")
    if isinstance(content, Mapping):
        result["content"] = [content]
    if extra:
        metadata = result.get("metadata")
        merged = dict(metadata) if isinstance(metadata, Mapping) else {}
        if metadata is not None and not isinstance(metadata, Mapping):
            extra["original:metadata"] = metadata
        for key, value in extra.items():
            merged[f"original:{key}" if key in merged else key] = value
        result["metadata"] = merged
    return result


def validate_message(value: Any, field: str = "message", *, original: bool = False) -> Message:
    """A :class:`Message` or a dict with its keys; returns a new, valid ``Message``.

    With ``original=True`` the TypeScript original's message shape is accepted
    too (see :func:`original_message`).
    """
    if isinstance(value, Message):
        data: Mapping[str, Any] = value.to_dict()
    elif isinstance(value, Mapping):
        data = original_message(value) if original else value
    else:
        raise InvalidInputError(field, f"must be a message object, not {type(value).__name__}.")
    unknown = set(data) - MESSAGE_FIELDS
    if unknown:
        names = ", ".join(sorted(map(str, unknown)))
        raise InvalidInputError(field, f"unknown fields: {names} (put extra data in 'metadata').")
    role = data.get("role")
    roles = tuple(app_settings.ROLES)
    if not isinstance(role, str) or role not in roles:
        raise InvalidInputError(f"{field}.role", f"must be one of: {', '.join(roles)}.")
    if "content" not in data:
        raise InvalidInputError(f"{field}.content", "is required.")
    kwargs: dict[str, Any] = {
        "role": str(role),
        "content": validate_content(data["content"], f"{field}.content"),
        "metadata": validate_metadata(data.get("metadata"), f"{field}.metadata"),
    }
    if data.get("id") is not None:
        kwargs["id"] = validate_identifier(data["id"], f"{field}.id")
    if data.get("timestamp") is not None:
        kwargs["timestamp"] = validate_timestamp(data["timestamp"], f"{field}.timestamp")
    for name in ("name", "tool_call_id"):
        text = _optional_text(data.get(name), f"{field}.{name}")
        if text is not None:
            kwargs[name] = text
    calls = validate_tool_calls(data.get("tool_calls"), f"{field}.tool_calls")
    if calls is not None:
        kwargs["tool_calls"] = calls
    return Message(**kwargs)


def _is_plain(value: Any, depth: int) -> bool:
    """Whether ``value`` is plain JSON data nesting at most ``depth`` deep (checks, no copy)."""
    kind = type(value)
    if kind is str:
        return value.isascii() or _is_encodable(value)
    if kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth <= 0:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _is_encodable(key)):
                return False
            # Scalars inline: most metadata is flat, and a call per value would dominate.
            item_kind = type(item)
            if item_kind is str:
                if not (item.isascii() or _is_encodable(item)):
                    return False
            elif not (item_kind is int or item_kind is bool or item is None) and not _is_plain(
                item, depth - 1
            ):
                return False
        return True
    if kind is list:
        return all(_is_plain(item, depth - 1) for item in value)
    return False


_STRICT_TYPES: dict[tuple[str, ...], Any] = {}


def _strict_messages_type(roles: Iterable[str]) -> Any:
    """``list[<Message subclass>]`` whose fields carry every rule msgspec can check in C.

    Roles become a ``Literal``, ids and texts get their length limits, unknown
    fields are refused. Built once per roles setting. The subclass adds no
    field, so converted instances become plain :class:`Message` objects by
    ``__class__`` assignment.
    """
    key = roles if type(roles) is tuple else tuple(roles)
    cached = _STRICT_TYPES.get(key)
    if cached is not None:
        return cached
    roles = key
    text = Annotated[str, msgspec.Meta(min_length=1)]
    namespace = {
        "__annotations__": {
            "role": Literal[roles],  # type: ignore[valid-type]
            "id": Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)],
            "timestamp": Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)] | None,
            "name": text | None,
            "tool_call_id": text | None,
        },
        "id": msgspec.field(default_factory=new_message_id),
        # None here, filled with one clock reading per batch (a call per message costs).
        "timestamp": None,
        "name": None,
        "tool_call_id": None,
    }
    strict = types.new_class(
        "_StrictMessage",
        (Message,),
        {"forbid_unknown_fields": True},
        lambda ns: ns.update(namespace),
    )
    cached = _STRICT_TYPES[key] = list[strict]  # type: ignore[valid-type]
    return cached


def _fast_messages(items: list[Any]) -> list[Message] | None:
    """All messages built and checked mostly in C, or None when any needs the slow pass.

    ``msgspec.convert`` checks types, roles, lengths, ranges and unknown
    fields; the loop checks what it cannot (control characters and lone
    surrogates, content parts, nested JSON in metadata and tool calls). Only
    top-level containers are fresh: nested JSON values may be shared with the
    input, which is fine because every backend encodes messages on write.
    """
    try:
        built = msgspec.convert(
            items, _strict_messages_type(app_settings.ROLES), from_attributes=True
        )
    except (msgspec.ValidationError, RecursionError):
        return None
    depth = _max_depth()
    encodable = _is_encodable
    now = now_ms()
    for message in built:
        if message.timestamp is None:
            message.timestamp = now
        message_id = message.id
        if not (message_id.isascii() and message_id.isprintable()):
            return None
        content = message.content
        if type(content) is str:
            if not content.isascii() and not encodable(content):
                return None
        else:
            for part in content:
                kind = part.get("type")
                if type(kind) is not str or not kind or not _is_plain(part, depth - 1):
                    return None
        metadata = message.metadata
        if metadata:
            for key, item in metadata.items():  # flat metadata inline; nested via _is_plain
                item_kind = type(item)
                if not key.isascii() and not encodable(key):
                    return None
                if item_kind is str:
                    if not item.isascii() and not encodable(item):
                        return None
                elif not (item_kind is int or item_kind is bool or item is None) and not _is_plain(
                    item, depth - 1
                ):
                    return None
        if message.tool_calls is not None and not _is_plain(message.tool_calls, depth):
            return None
        for text in (message.name, message.tool_call_id):
            if text is not None and not (text.isascii() or encodable(text)):
                return None
        message.__class__ = Message
    result: list[Message] = built
    return result


def _check_distinct_ids(messages: list[Message], field: str) -> None:
    if len({m.id for m in messages}) == len(messages):
        return
    first: dict[str, int] = {}
    for index, message in enumerate(messages):
        if message.id in first:
            raise InvalidInputError(
                f"{field}.{index}.id",
                f"duplicates the id of {field}.{first[message.id]} (ids must be distinct).",
            )
        first[message.id] = index


def validate_messages(
    value: Any,
    field: str = "messages",
    *,
    max_batch: int | None = None,
    original: bool = False,
) -> list[Message]:
    """A list of messages of at most ``CONVSTORE_MAX_BATCH`` (or ``max_batch``) items.

    Ids must be distinct within the list. With ``original=True`` each item may
    use the TypeScript original's message shape (see :func:`original_message`).
    """
    if isinstance(value, str | bytes | Mapping | Message) or not isinstance(value, Iterable):
        raise InvalidInputError(field, "must be a list of messages.")
    items = value if type(value) is list else list(value)
    limit = app_settings.MAX_BATCH if max_batch is None else max_batch
    if limit is not None and len(items) > limit:
        raise InvalidInputError(field, f"at most {limit} messages per call (got {len(items)}).")
    # Items in the original's shape fail the fast pass (unknown fields) and go the slow way.
    messages = _fast_messages(items)
    if messages is None:
        messages = [
            validate_message(item, f"{field}.{index}", original=original)
            for index, item in enumerate(items)
        ]
    _check_distinct_ids(messages, field)
    return messages


def validate_conversation(
    value: Any, field: str = "conversation", *, original: bool = False
) -> Conversation:
    """A whole :class:`Conversation` (or its ``to_dict()`` form) for ``put``.

    Timestamps, TTL, owner and metadata are kept exactly; ``message_count``
    must match the number of messages so a windowed load is never written
    back as if it were the whole conversation. Message ids must be distinct.
    """
    if isinstance(value, Conversation):
        data: Mapping[str, Any] = value.to_dict()
    elif isinstance(value, Mapping):
        data = value
    else:
        raise InvalidInputError(field, "must be a Conversation or a dict.")
    cid = validate_conversation_id(data.get("conversation_id"))
    # A whole conversation has no batch limit (max_batch=None would mean CONVSTORE_MAX_BATCH).
    messages = validate_messages(
        data.get("messages", []), "messages", max_batch=sys.maxsize, original=original
    )
    meta = data.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidInputError("metadata", "must be a conversation metadata object.")
    if meta.get("conversation_id", cid) != cid:
        raise InvalidInputError("metadata.conversation_id", "must match conversation_id.")
    created_at = validate_timestamp(meta.get("created_at", now_ms()), "metadata.created_at")
    updated_at = validate_timestamp(meta.get("updated_at", created_at), "metadata.updated_at")
    count = meta.get("message_count", len(messages))
    if count != len(messages):
        raise InvalidInputError(
            "metadata.message_count",
            f"is {count} but {len(messages)} messages were given; put needs the whole "
            "conversation.",
        )
    metadata = ConversationMetadata(
        conversation_id=cid,
        created_at=created_at,
        updated_at=updated_at,
        message_count=len(messages),
        ttl=validate_ttl(meta.get("ttl"), "metadata.ttl"),
        owner=validate_owner(meta.get("owner"), "metadata.owner"),
        metadata=validate_metadata(meta.get("metadata"), "metadata.metadata"),
    )
    return Conversation(conversation_id=cid, messages=messages, metadata=metadata)
