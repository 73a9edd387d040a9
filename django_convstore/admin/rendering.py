"""How the transcript shows a message: its role, text, content parts and tool calls.

Messages are user data: every value reaches the page through the template's
autoescaping, nothing is marked safe. Content parts are described, never
fetched or embedded: an image or file with an ``http(s)`` URL becomes a link
(no ``<img>``, so opening a conversation requests nothing from anywhere),
inline data (base64 images and audio) becomes a line saying what it is and
how large, and any other URL scheme (``javascript:``, ``data:`` …) is shown
as text only. Parts of a type this module does not know are shown as their
JSON, long strings abridged.

The known shapes are OpenAI's (``text``, ``image_url``, ``input_audio``,
``file``, the Responses API's ``input_*``/``output_text``/``refusal``) and
Anthropic's (``image``/``document`` with a ``source``, ``tool_use``,
``tool_result``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.text import slugify
from django.utils.translation import gettext as _

from ..types import Message
from .display import ms_to_datetime, pretty_json

#: Roles with a bubble style of their own; any other role also gets ``convstore-role-other``.
STYLED_ROLES = frozenset({"user", "assistant", "system", "developer", "tool", "function"})
#: Part types whose ``text`` is the text to show.
TEXT_TYPES = frozenset({"text", "input_text", "output_text"})
#: URL schemes that become links (anything else is shown as text).
LINK_SCHEMES = ("http://", "https://")


def role_classes(role: str) -> str:
    """CSS classes of a message bubble: ``convstore-role-<role>`` (+ ``-other`` when unstyled)."""
    slug = slugify(role) or "unknown"
    classes = f"convstore-msg convstore-role-{slug}"
    if role not in STYLED_ROLES:
        classes += " convstore-role-other"
    return classes


@dataclass(frozen=True)
class PartView:
    """One content part as the page shows it.

    ``kind`` picks the template: ``text`` (``text``), ``link`` (``label`` linking
    to ``url``), ``note`` (``label`` alone: inline data, unlinkable URLs) or
    ``json``. ``json`` holds the part's JSON for the last, and as details.
    """

    type: str
    kind: str
    text: str = ""
    label: str = ""
    url: str = ""
    json: str = ""


@dataclass(frozen=True)
class ToolCallView:
    """One tool call: its id, the tool's name and the arguments (pretty JSON when they are)."""

    id: str
    name: str
    arguments: str


@dataclass
class MessageView:
    """Everything the transcript shows of one message."""

    position: int
    id: str
    role: str
    classes: str
    timestamp: Any
    name: str = ""
    tool_call_id: str = ""
    text: str | None = None
    parts: list[PartView] = field(default_factory=list)
    tool_calls: list[ToolCallView] = field(default_factory=list)
    metadata_json: str = ""


def _size(data: Any) -> str:
    count = len(data) if isinstance(data, str) else 0
    return _("%(count)s characters of base64") % {"count": count}


def _link_or_note(part_type: str, what: str, url: Any, part: Mapping[str, Any]) -> PartView:
    """A link for an http(s) URL; a note for inline data or any other scheme."""
    raw = pretty_json(part, abridge=True)
    if not isinstance(url, str) or not url:
        return PartView(part_type, "json", json=raw)
    if url.startswith(LINK_SCHEMES):
        return PartView(part_type, "link", label=what, url=url, json=raw)
    if url.startswith("data:"):
        media = url[5:].split(";", 1)[0].split(",", 1)[0] or _("unknown type")
        label = _("%(what)s, inline (%(media)s, %(size)s)") % {
            "what": what,
            "media": media,
            "size": _size(url),
        }
        return PartView(part_type, "note", label=label, json=raw)
    label = _("%(what)s: %(url)s (not a web address; not linked)") % {
        "what": what,
        "url": url[:200],
    }
    return PartView(part_type, "note", label=label, json=raw)


def _image(part_type: str, part: Mapping[str, Any]) -> PartView:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    detail = image.get("detail") if isinstance(image, Mapping) else None
    what = _("image") if not isinstance(detail, str) else _("image (%s)") % detail
    if url is None and isinstance(part.get("file_id"), str):
        return PartView(part_type, "note", label=_("image file %s") % part["file_id"])
    return _link_or_note(part_type, what, url, part)


def _sourced(part_type: str, part: Mapping[str, Any]) -> PartView:
    """Anthropic's ``image``/``document`` parts: ``source`` is a URL, base64 data or a file."""
    what = _("image") if part_type == "image" else _("document")
    source = part.get("source")
    if not isinstance(source, Mapping):
        return PartView(part_type, "json", json=pretty_json(part, abridge=True))
    if source.get("type") == "url":
        return _link_or_note(part_type, what, source.get("url"), part)
    if source.get("type") == "base64":
        label = _("%(what)s, inline (%(media)s, %(size)s)") % {
            "what": what,
            "media": source.get("media_type") or _("unknown type"),
            "size": _size(source.get("data")),
        }
        return PartView(part_type, "note", label=label, json=pretty_json(part, abridge=True))
    return PartView(part_type, "json", json=pretty_json(part, abridge=True))


def _audio(part_type: str, part: Mapping[str, Any]) -> PartView:
    audio = part.get("input_audio")
    if not isinstance(audio, Mapping):
        return PartView(part_type, "json", json=pretty_json(part, abridge=True))
    label = _("audio, inline (%(format)s, %(size)s)") % {
        "format": audio.get("format") or _("unknown format"),
        "size": _size(audio.get("data")),
    }
    return PartView(part_type, "note", label=label, json=pretty_json(part, abridge=True))


def _file(part_type: str, part: Mapping[str, Any]) -> PartView:
    info = part.get("file") if isinstance(part.get("file"), Mapping) else part
    assert isinstance(info, Mapping)
    name = info.get("filename") or info.get("file_id") or _("unnamed")
    url = info.get("file_url")
    if isinstance(url, str) and url.startswith(LINK_SCHEMES):
        return _link_or_note(part_type, _("file %s") % name, url, part)
    label = _("file %(name)s") % {"name": name}
    if isinstance(info.get("file_data"), str):
        label = _("%(label)s, inline (%(size)s)") % {
            "label": label,
            "size": _size(info["file_data"]),
        }
    return PartView(part_type, "note", label=label, json=pretty_json(part, abridge=True))


def part_view(part: Mapping[str, Any]) -> PartView:
    """How one content part is shown (see the module docstring)."""
    part_type = str(part.get("type", ""))
    if part_type in TEXT_TYPES and isinstance(part.get("text"), str):
        return PartView(part_type, "text", text=part["text"])
    if part_type == "refusal" and isinstance(part.get("refusal"), str):
        return PartView(part_type, "text", text=part["refusal"])
    if part_type in ("image_url", "input_image"):
        return _image(part_type, part)
    if part_type in ("image", "document"):
        return _sourced(part_type, part)
    if part_type == "input_audio":
        return _audio(part_type, part)
    if part_type in ("file", "input_file"):
        return _file(part_type, part)
    if part_type == "tool_use":
        label = _("calls %(name)s") % {"name": part.get("name", "?")}
        return PartView(part_type, "json", label=label, json=pretty_json(part.get("input", {})))
    if part_type == "tool_result":
        label = _("result of %(id)s") % {"id": part.get("tool_use_id", "?")}
        return PartView(
            part_type, "json", label=label, json=pretty_json(part.get("content"), abridge=True)
        )
    return PartView(part_type, "json", json=pretty_json(part, abridge=True))


def _arguments(value: Any) -> str:
    """Tool-call arguments: a JSON string pretty-printed, other strings as they are."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return pretty_json(parsed, abridge=True) if isinstance(parsed, dict | list) else value
    return pretty_json(value, abridge=True)


def tool_call_view(call: Mapping[str, Any]) -> ToolCallView:
    """One tool call: OpenAI's ``{id, type, function: {name, arguments}}``, or any object."""
    function = call.get("function")
    if isinstance(function, Mapping):
        name = function.get("name")
        arguments = _arguments(function.get("arguments", ""))
    else:
        name = call.get("name")
        rest = {key: value for key, value in call.items() if key not in ("id", "name")}
        arguments = _arguments(call.get("input", call.get("arguments", rest)))
    return ToolCallView(
        id=str(call.get("id") or ""),
        name=str(name or call.get("type") or _("tool")),
        arguments=arguments,
    )


def message_view(message: Message, position: int) -> MessageView:
    """Everything the transcript shows of ``message``, at 1-based ``position``."""
    view = MessageView(
        position=position,
        id=message.id,
        role=message.role,
        classes=role_classes(message.role),
        timestamp=ms_to_datetime(message.timestamp),
        name=message.name or "",
        tool_call_id=message.tool_call_id or "",
        metadata_json=pretty_json(message.metadata, abridge=True) if message.metadata else "",
    )
    if isinstance(message.content, str):
        view.text = message.content
    else:
        view.parts = [part_view(part) for part in message.content]
    view.tool_calls = [tool_call_view(call) for call in message.tool_calls or ()]
    return view
