"""OpenAPI building blocks shared by the viewset's ``extend_schema`` declarations."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from .serializers import ErrorSerializer
from .text import markdown_from_rest


class ConvStoreAutoSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema``, with docstrings' reST markup rewritten as Markdown."""

    def get_description(self) -> str:  # type: ignore[override]
        """The operation's docstring as Markdown."""
        return markdown_from_rest(super().get_description())


_ERRORS: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description='Bad input: field errors (`{"field": ["message"]}`, nested for '
        'messages), or `{"detail": ...}` for a body that is not JSON.',
    ),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated (Basic/token auth)."),
    403: OpenApiResponse(ErrorSerializer, description="Not authenticated, or not allowed."),
    404: OpenApiResponse(
        ErrorSerializer, description="No such conversation, or it belongs to someone else."
    ),
    406: OpenApiResponse(
        ErrorSerializer, description="The Accept header allows no format the API can answer in."
    ),
    409: OpenApiResponse(ErrorSerializer, description="The conversation id is already taken."),
    413: OpenApiResponse(
        ErrorSerializer, description="The body is larger than CONVSTORE_API_MAX_BODY bytes."
    ),
    415: OpenApiResponse(ErrorSerializer, description="The body is not JSON."),
    429: OpenApiResponse(ErrorSerializer, description="Throttled (see Retry-After)."),
    502: OpenApiResponse(ErrorSerializer, description="The store's backend answered an error."),
    503: OpenApiResponse(ErrorSerializer, description="The store's backend is unreachable."),
}

_ALWAYS = (401, 403, 406, 429, 502, 503)
_BODY = (400, 413, 415)


def error_responses(*codes: int, body: bool = False) -> dict[int, OpenApiResponse]:
    """The error responses of an operation: the usual ones, ``codes``, and body errors."""
    wanted = {*_ALWAYS, *codes, *(_BODY if body else ())}
    return {code: _ERRORS[code] for code in sorted(wanted)}


CONVERSATION_ID = OpenApiParameter(
    "conversation_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The conversation id, URL-encoded. Ids containing '/' are not addressable, "
    "'stats' is the stats endpoint, and '.' and '..' are path segments.",
    pattern=r"^(?!(?:stats|\.|\.\.)$)[^/]+$",
)
LIMIT = OpenApiParameter(
    "limit", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Items per page (1-1000)."
)
OFFSET = OpenApiParameter(
    "offset", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Index of the first item."
)
PREFIX = OpenApiParameter(
    "prefix",
    {"type": "string", "maxLength": 255},
    OpenApiParameter.QUERY,
    description="Only conversations whose id starts with this (at most 255 characters).",
)
LAST = OpenApiParameter(
    "last",
    {"type": "integer", "minimum": 0},
    OpenApiParameter.QUERY,
    description="Return only the newest N messages (`message_count` still counts them all).",
)
