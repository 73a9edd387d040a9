"""``ConversationViewSet``: the REST API over the store named by ``CONVSTORE_API_STORE``.

Every request is scoped by :mod:`django_convstore.api.permissions`: a
conversation the user may not see answers 404, exactly like a missing one.
Store errors are translated by :mod:`django_convstore.api.exceptions`, so bad
input answers 400, an unreachable backend 503, a failing backend 502.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from .. import validation
from ..backends.base import BaseStore
from ..conf import app_settings
from ..exceptions import InvalidInputError
from ..handler import stores
from ..types import ConversationMetadata
from . import schema
from .exceptions import ConversationExists, RequestBodyTooLarge, invalid_input, translate
from .pagination import MAX_OFFSET, ConversationPagination, MessagePagination
from .parsers import ConvStoreJSONParser
from .permissions import ConversationPermission, OwnerScope, get_scope_class
from .serializers import (
    AppendSerializer,
    ConversationCreateSerializer,
    ConversationMetadataSerializer,
    ConversationPatchSerializer,
    ConversationSaveSerializer,
    ConversationSerializer,
    ErrorSerializer,
    MessageInputSerializer,
    MessagePageSerializer,
    StoreStatsSerializer,
    TTLResponseSerializer,
    TTLSerializer,
    parse_append_body,
)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

APPEND_BODY = PolymorphicProxySerializer(
    component_name="AppendMessages",
    serializers=[AppendSerializer, MessageInputSerializer],
    resource_type_field_name=None,
)


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: ["must be an integer."]}) from None
    try:
        return validation.validate_positive_int(value, name, minimum=0)
    except InvalidInputError as exc:
        raise invalid_input(exc) from None


class ConversationViewSet(viewsets.ViewSet):
    """Conversations of the store named by ``CONVSTORE_API_STORE``, scoped per user.

    Subclass to change ``scope_class`` (who sees what), ``permission_classes``,
    ``throttle_classes``, the pagination classes or ``get_store()``.
    """

    lookup_field = "conversation_id"
    # Any id without '/' ('stats' is routed to the stats action first).
    lookup_value_regex = "[^/]+"
    permission_classes = [ConversationPermission]
    parser_classes = [ConvStoreJSONParser]
    #: None: ``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``, read at request time.
    throttle_classes: Sequence[type[BaseThrottle]] | None = None  # type: ignore[assignment]
    #: The rate name ``ScopedRateThrottle`` uses for this API.
    throttle_scope = "convstore"
    #: None: the class named by ``CONVSTORE_API_SCOPE_CLASS`` (default ``OwnerScope``).
    scope_class: type[OwnerScope] | None = None
    #: Pages ``GET conversations/`` through ``store.list_conversations``.
    pagination_class = ConversationPagination
    #: Windows ``GET conversations/{id}/messages/``.
    message_pagination_class = MessagePagination

    # -- plumbing --------------------------------------------------------------------------

    def get_store(self) -> BaseStore:
        """The store this API serves (``CONVSTORE_API_STORE``, read per request)."""
        return stores[app_settings.API_STORE]

    def get_scope(self) -> OwnerScope:
        """The request's scope (built once per request)."""
        scope: OwnerScope | None = getattr(self, "_scope", None)
        if scope is None or scope.request is not self.request:
            scope_class = self.scope_class or get_scope_class()
            scope = self._scope = scope_class(self.request)
        return scope

    def get_throttles(self) -> list[BaseThrottle]:
        """Instances of ``throttle_classes``, or of the configured DRF defaults."""
        classes: Sequence[Any] = self.throttle_classes or ()
        if self.throttle_classes is None:
            classes = api_settings.DEFAULT_THROTTLE_CLASSES
        return [throttle() for throttle in classes]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Authenticate, check permissions and throttles, then the body size (413)."""
        super().initial(request, *args, **kwargs)
        if request.method in BODY_METHODS:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = app_settings.API_MAX_BODY
            if limit is not None and length > limit:
                raise RequestBodyTooLarge(f"Request body too large (limit {limit} bytes).")

    def handle_exception(self, exc: Exception) -> Response:
        """Store errors become API errors (400/502/503) before DRF handles them."""
        return super().handle_exception(translate(exc))

    def visible_or_missing(self, conversation_id: str) -> ConversationMetadata | None:
        """The metadata of a conversation this user may see, None when missing, else 404."""
        conversation = self.get_store().load(conversation_id, last=0)
        if conversation is None:
            return None
        if not self.get_scope().allows(conversation.metadata):
            raise NotFound()
        return conversation.metadata

    def visible(self, conversation_id: str) -> ConversationMetadata:
        """The metadata of a conversation this user may see; 404 otherwise (no existence leak)."""
        metadata = self.visible_or_missing(conversation_id)
        if metadata is None:
            raise NotFound()
        return metadata

    def created_location(self, conversation_id: str) -> str:
        """The absolute URL of a conversation created by ``POST`` on the list URL."""
        return self.request.build_absolute_uri(
            f"{self.request.path}{quote(conversation_id, safe='')}/"
        )

    # -- conversations ---------------------------------------------------------------------

    @extend_schema(
        summary="List conversations (metadata only), newest first",
        parameters=[schema.PREFIX],  # limit and offset come from pagination_class
        responses={
            200: ConversationMetadataSerializer(many=True),
            **schema.error_responses(400),
        },
    )
    def list(self, request: Request) -> Response:
        """``GET conversations/``: a page of the user's (staff: all) conversations."""
        prefix = request.query_params.get("prefix")
        try:
            prefix = validation.validate_prefix(prefix)
        except InvalidInputError as exc:
            raise invalid_input(exc) from None
        paginator = self.pagination_class()
        items = paginator.paginate_store(
            self.get_store(), request, owner=self.get_scope().owner_filter(), prefix=prefix
        )
        return paginator.get_paginated_response([item.to_dict() for item in items])

    @extend_schema(
        summary="Create a conversation",
        request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, **schema.error_responses(409, body=True)},
    )
    def create(self, request: Request) -> Response:
        """``POST conversations/``: 201 and the conversation; 409 when the id is taken.

        One ``store.create`` call (create-if-absent, atomic): of simultaneous
        creates of one id exactly one answers 201, and the others 409 without
        writing anything. The 409 answers the same whoever owns the existing
        conversation: it tells only that the id is taken, never whose it is or
        what it holds.
        """
        serializer = ConversationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation_id = data.get("conversation_id")
        if conversation_id is None:
            conversation_id = uuid.uuid4().hex
        conversation = self.get_store().create(
            conversation_id,
            data["messages"],
            ttl=data.get("ttl"),
            metadata=data.get("metadata"),
            owner=self.get_scope().owner_for_new(),
        )
        if conversation is None:
            raise ConversationExists()
        return Response(
            conversation.to_dict(),
            status=status.HTTP_201_CREATED,
            headers={"Location": self.created_location(conversation_id)},
        )

    @extend_schema(
        summary="Get a conversation",
        parameters=[schema.CONVERSATION_ID, schema.LAST],
        responses={200: ConversationSerializer, **schema.error_responses(400, 404)},
    )
    def retrieve(self, request: Request, conversation_id: str) -> Response:
        """``GET conversations/{id}/``; ``?last=N`` for the newest N messages."""
        last = _query_int(request, "last")
        if last is not None:
            last = min(last, MAX_OFFSET)
        conversation = self.get_store().load(conversation_id, last=last)
        if conversation is None or not self.get_scope().allows(conversation.metadata):
            raise NotFound()
        return Response(conversation.to_dict())

    @extend_schema(
        summary="Save a conversation (replace its messages; creates it when missing)",
        parameters=[schema.CONVERSATION_ID],
        request=ConversationSaveSerializer,
        responses={200: ConversationSerializer, **schema.error_responses(404, body=True)},
    )
    def update(self, request: Request, conversation_id: str) -> Response:
        """``PUT conversations/{id}/``: ``store.save``; the owner is kept, or set when new."""
        existing = self.visible_or_missing(conversation_id)
        serializer = ConversationSaveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation = self.get_store().save(
            conversation_id,
            data["messages"],
            ttl=data.get("ttl"),
            metadata=data.get("metadata"),
            owner=self.get_scope().owner_for_new() if existing is None else None,
        )
        return Response(conversation.to_dict())

    @extend_schema(
        summary="Change a conversation's custom metadata and/or TTL",
        parameters=[schema.CONVERSATION_ID],
        request=ConversationPatchSerializer,
        responses={200: ConversationMetadataSerializer, **schema.error_responses(404, body=True)},
    )
    def partial_update(self, request: Request, conversation_id: str) -> Response:
        """``PATCH conversations/{id}/``: merge ``metadata``, set ``ttl``; returns the metadata.

        ``ttl`` goes through ``store.set_ttl`` and ``metadata`` through
        ``store.update_metadata`` (merged over the existing keys); both are
        atomic and leave the messages alone, so messages appended meanwhile
        are never lost. With both, the TTL is set first and the metadata
        merged second; the response is the metadata after both. An empty or
        null ``metadata`` changes nothing.
        """
        current = self.visible(conversation_id)
        serializer = ConversationPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        store = self.get_store()
        result: ConversationMetadata | None = current
        if "ttl" in data and not store.set_ttl(conversation_id, data["ttl"]):
            raise NotFound()
        if data.get("metadata"):
            result = store.update_metadata(conversation_id, data["metadata"])
        elif "ttl" in data:
            result = self.visible_or_missing(conversation_id)
        if result is None:
            raise NotFound()
        return Response(result.to_dict())

    @extend_schema(
        summary="Delete a conversation",
        parameters=[schema.CONVERSATION_ID],
        responses={204: None, **schema.error_responses(400, 404)},
    )
    def destroy(self, request: Request, conversation_id: str) -> Response:
        """``DELETE conversations/{id}/``: 204."""
        self.visible(conversation_id)
        if not self.get_store().delete(conversation_id):
            raise NotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)

    # -- messages, ttl, stats ------------------------------------------------------------

    @extend_schema(
        methods=["GET"],
        summary="A window of a conversation's messages, oldest first",
        parameters=[schema.CONVERSATION_ID, schema.LIMIT, schema.OFFSET],
        responses={200: MessagePageSerializer, **schema.error_responses(400, 404)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Append messages (a list, or one message object)",
        parameters=[schema.CONVERSATION_ID],
        request=APPEND_BODY,
        responses={201: ConversationMetadataSerializer, **schema.error_responses(404, body=True)},
    )
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, conversation_id: str) -> Response:
        """``GET``: a window (``offset``, ``limit``); ``POST``: append, 201 + metadata.

        Appending needs an existing conversation the user may see (else 404):
        the store's append would create a missing one without an owner.
        """
        metadata = self.visible(conversation_id)
        store = self.get_store()
        if request.method == "POST":
            messages = parse_append_body(request.data)
            result = store.append(conversation_id, messages)
            return Response(result.to_dict(), status=status.HTTP_201_CREATED)
        paginator = self.message_pagination_class()
        window = paginator.paginate_messages(
            store, request, conversation_id, metadata.message_count
        )
        return paginator.get_paginated_response([m.to_dict() for m in window])

    @extend_schema(
        methods=["GET"],
        summary="Remaining lifetime of a conversation",
        parameters=[schema.CONVERSATION_ID],
        responses={200: TTLResponseSerializer, **schema.error_responses(400, 404)},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Set the TTL (counts as an update: it expires ttl seconds from now)",
        parameters=[schema.CONVERSATION_ID],
        request=TTLSerializer,
        responses={200: TTLResponseSerializer, **schema.error_responses(404, body=True)},
    )
    @action(detail=True, methods=["get", "put"])
    def ttl(self, request: Request, conversation_id: str) -> Response:
        """``GET``: ``{"ttl": seconds}`` (-1 = never); ``PUT {"ttl": N}`` sets it (0 = never)."""
        self.visible(conversation_id)
        store = self.get_store()
        if request.method == "PUT":
            serializer = TTLSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            ttl = serializer.validated_data["ttl"]
            if not store.set_ttl(conversation_id, ttl):
                raise NotFound()
            remaining = ttl or -1
        else:
            remaining = store.get_ttl(conversation_id)
        if remaining == -2:
            raise NotFound()
        return Response({"ttl": remaining})

    @extend_schema(
        summary="Store statistics (staff only)",
        responses={
            200: StoreStatsSerializer,
            **schema.error_responses(),
            403: OpenApiResponse(ErrorSerializer, description="Not staff."),
        },
    )
    @action(detail=False, methods=["get"])
    def stats(self, request: Request) -> Response:
        """``GET conversations/stats/``: ``StoreStats`` (staff only, 403 otherwise)."""
        return Response(self.get_store().get_stats().to_dict())
