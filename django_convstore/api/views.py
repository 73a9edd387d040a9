"""``ConversationViewSet``: the REST API over the store named by ``CONVSTORE_API_STORE``.

Every store call carries the owner the request acts as (see
:mod:`django_convstore.api.permissions`): the user's own, so the store itself
treats other owners' conversations as missing (404) inside its atomic step,
or None for a user with the cross-owner permission. No view checks first and
writes second. Store errors are translated by
:mod:`django_convstore.api.exceptions`: bad input answers 400, an
unreachable backend 503, a failing backend 502.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from django.utils.encoding import smart_str
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status, viewsets
from rest_framework.compat import apply_markdown
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.utils import formatting

from .. import validation
from ..backends.base import BaseStore
from ..conf import app_settings
from ..exceptions import InvalidInputError
from ..handler import stores
from ..types import Conversation, ConversationMetadata, Message
from . import schema as openapi
from .authentication import ChallengeMixin
from .exceptions import ConversationExists, RequestBodyTooLarge, invalid_input, translate
from .ownership import write_as
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
    PoppedSerializer,
    PopSerializer,
    StoreStatsSerializer,
    TruncateSerializer,
    TTLResponseSerializer,
    TTLSerializer,
    parse_append_body,
    validate_api_conversation_id,
)
from .text import markdown_from_rest, plain_from_markdown

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


def _creatable_id(conversation_id: str) -> str:
    """The URL's id when a write may create it: the API's id rule applies (else 400)."""
    try:
        return validate_api_conversation_id(conversation_id)
    except InvalidInputError as exc:
        raise invalid_input(exc) from None


class ConversationViewSet(ChallengeMixin, viewsets.ViewSet):
    """Conversations of the store named by `CONVSTORE_API_STORE`, scoped per owner.

    Users act on their own conversations; other owners' answer 404, as if
    they did not exist. The Django permissions `view_conversation`,
    `change_conversation` and `delete_conversation` grant access to everyone's.

    Subclass to change `scope_class` (who acts as whom), `permission_classes`,
    `throttle_classes`, the pagination classes or `get_store()`.
    """

    lookup_field = "conversation_id"
    # Any id without '/' ('stats' is routed to the stats action first).
    lookup_value_regex = "[^/]+"
    permission_classes = [ConversationPermission]
    parser_classes = [ConvStoreJSONParser]
    schema = openapi.ConvStoreAutoSchema()
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

    def get_view_description(self, html: bool = False) -> str:
        """The docstring for the browsable API: Markdown (plain text without Python-Markdown)."""
        description = getattr(self, "description", None) or self.__class__.__doc__ or ""
        text = markdown_from_rest(formatting.dedent(smart_str(description)))
        if not html:
            return text
        if apply_markdown is None:
            text = plain_from_markdown(text)
        return formatting.markup_description(text)

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
        """Store errors become API errors (400/404/502/503) before DRF handles them."""
        return super().handle_exception(translate(exc))

    def head_of(self, conversation_id: str, owner: str | None) -> ConversationMetadata:
        """The metadata of a conversation ``owner`` may see (no messages read); else 404."""
        head = self.get_store().load(conversation_id, last=0, owner=owner)
        if head is None:
            raise NotFound()
        return head.metadata

    def created_location(self, conversation_id: str) -> str:
        """The absolute URL of a conversation created by ``POST`` on the list URL."""
        path = self.request.path
        if not path.endswith("/"):
            path += "/"
        return self.request.build_absolute_uri(f"{path}{quote(conversation_id, safe='')}/")

    # -- conversations ---------------------------------------------------------------------

    @extend_schema(
        summary="List conversations (metadata only), newest first",
        parameters=[openapi.PREFIX],  # limit and offset come from pagination_class
        responses={
            200: ConversationMetadataSerializer(many=True),
            **openapi.error_responses(400),
        },
    )
    def list(self, request: Request) -> Response:
        """`GET conversations/`: a page of the user's conversations (everyone's with
        `view_conversation`)."""
        prefix = request.query_params.get("prefix")
        try:
            prefix = validation.validate_prefix(prefix)
        except InvalidInputError as exc:
            raise invalid_input(exc) from None
        paginator = self.pagination_class()
        items = paginator.paginate_store(
            self.get_store(), request, owner=self.get_scope().owner_for("view"), prefix=prefix
        )
        return paginator.get_paginated_response([item.to_dict() for item in items])

    @extend_schema(
        summary="Create a conversation",
        request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, **openapi.error_responses(409, body=True)},
    )
    def create(self, request: Request) -> Response:
        """`POST conversations/`: 201 and the conversation; 409 when the id is taken.

        One `store.create` call (create-if-absent, atomic), owned by the
        caller: of simultaneous creates of one id exactly one answers 201, and
        the others 409 without writing anything. The 409 answers the same
        whoever owns the existing conversation: it tells only that the id is
        taken, never whose it is or what it holds.
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
            owner=self.get_scope().owner_id(),
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
        parameters=[openapi.CONVERSATION_ID, openapi.LAST],
        responses={200: ConversationSerializer, **openapi.error_responses(400, 404)},
    )
    def retrieve(self, request: Request, conversation_id: str) -> Response:
        """`GET conversations/{id}/`; `?last=N` for the newest N messages."""
        last = _query_int(request, "last")
        if last is not None:
            last = min(last, MAX_OFFSET)
        conversation = self.get_store().load(
            conversation_id, last=last, owner=self.get_scope().owner_for("view")
        )
        if conversation is None:
            raise NotFound()
        return Response(conversation.to_dict())

    @extend_schema(
        summary="Save a conversation (replace its messages; creates it when missing)",
        parameters=[openapi.CONVERSATION_ID],
        request=ConversationSaveSerializer,
        responses={200: ConversationSerializer, **openapi.error_responses(404, body=True)},
    )
    def update(self, request: Request, conversation_id: str) -> Response:
        """`PUT conversations/{id}/`: `store.save`, as the caller's owner.

        A missing id is created for the caller; the caller's own conversation
        is replaced; another owner's answers 404 and is left unchanged (with
        `change_conversation` it is replaced and keeps its owner).
        """
        conversation_id = _creatable_id(conversation_id)
        serializer = ConversationSaveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        store = self.get_store()

        def save(owner: str | None) -> Conversation:
            return store.save(
                conversation_id,
                data["messages"],
                ttl=data.get("ttl"),
                metadata=data.get("metadata"),
                owner=owner,
            )

        conversation = write_as(self.get_scope(), store, conversation_id, save)
        return Response(conversation.to_dict())

    @extend_schema(
        summary="Change a conversation's custom metadata and/or TTL",
        parameters=[openapi.CONVERSATION_ID],
        request=ConversationPatchSerializer,
        responses={200: ConversationMetadataSerializer, **openapi.error_responses(404, body=True)},
    )
    def partial_update(self, request: Request, conversation_id: str) -> Response:
        """`PATCH conversations/{id}/`: merge `metadata`, set `ttl`; returns the metadata.

        `ttl` goes through `store.set_ttl` and `metadata` through
        `store.update_metadata` (merged over the existing keys); both are
        atomic and leave the messages alone, so messages appended meanwhile
        are never lost. With both, the TTL is set first and the metadata
        merged second; the response is the metadata after both. An empty or
        null `metadata` changes nothing.
        """
        serializer = ConversationPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        store = self.get_store()
        owner = self.get_scope().owner_for("change")
        if "ttl" in data and not store.set_ttl(conversation_id, data["ttl"], owner=owner):
            raise NotFound()
        if data.get("metadata"):
            result = store.update_metadata(conversation_id, data["metadata"], owner=owner)
            if result is None:
                raise NotFound()
            return Response(result.to_dict())
        return Response(self.head_of(conversation_id, owner).to_dict())

    @extend_schema(
        summary="Delete a conversation",
        parameters=[openapi.CONVERSATION_ID],
        responses={204: None, **openapi.error_responses(400, 404)},
    )
    def destroy(self, request: Request, conversation_id: str) -> Response:
        """`DELETE conversations/{id}/`: 204."""
        owner = self.get_scope().owner_for("delete")
        if not self.get_store().delete(conversation_id, owner=owner):
            raise NotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)

    # -- messages, pop, truncate, ttl, stats ---------------------------------------------

    @extend_schema(
        methods=["GET"],
        summary="A window of a conversation's messages, oldest first",
        parameters=[openapi.CONVERSATION_ID, openapi.LIMIT, openapi.OFFSET],
        responses={200: MessagePageSerializer, **openapi.error_responses(400, 404)},
    )
    @extend_schema(
        methods=["POST"],
        summary="Append messages (a list, or one message object); creates a missing conversation",
        parameters=[openapi.CONVERSATION_ID],
        request=APPEND_BODY,
        responses={201: ConversationMetadataSerializer, **openapi.error_responses(404, body=True)},
    )
    @action(detail=True, methods=["get", "post"])
    def messages(self, request: Request, conversation_id: str) -> Response:
        """`GET`: a window (`offset`, `limit`); `POST`: append, 201 + metadata.

        Appending is idempotent per message id: messages whose id the
        conversation already holds are skipped, so retrying a timed-out
        append never duplicates a message. A missing conversation is created
        for the caller; another owner's answers 404.
        """
        store = self.get_store()
        if request.method == "POST":
            conversation_id = _creatable_id(conversation_id)
            messages = parse_append_body(request.data)

            def append(owner: str | None) -> ConversationMetadata:
                return store.append(conversation_id, messages, owner=owner)

            result = write_as(self.get_scope(), store, conversation_id, append)
            return Response(result.to_dict(), status=status.HTTP_201_CREATED)
        owner = self.get_scope().owner_for("view")
        metadata = self.head_of(conversation_id, owner)
        paginator = self.message_pagination_class()
        window = paginator.paginate_messages(
            store, request, conversation_id, metadata.message_count, owner=owner
        )
        return paginator.get_paginated_response([m.to_dict() for m in window])

    @extend_schema(
        summary="Remove the newest messages and return them",
        parameters=[openapi.CONVERSATION_ID],
        request=PopSerializer,
        responses={200: PoppedSerializer, **openapi.error_responses(404, body=True)},
    )
    @action(detail=True, methods=["post"])
    def pop(self, request: Request, conversation_id: str) -> Response:
        """`POST conversations/{id}/pop/` `{"count": n}`: the removed messages, oldest first.

        Atomic. `count` defaults to 1; more than the conversation holds removes
        them all, and an empty conversation answers `{"messages": []}`.
        """
        serializer = PopSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        count = serializer.validated_data.get("count", 1)
        store = self.get_store()
        owner = self.get_scope().owner_for("change")
        removed: list[Message] = store.pop(conversation_id, count, owner=owner)
        if not removed:
            self.head_of(conversation_id, owner)  # 404 unless it exists (and is empty)
        return Response({"messages": [message.to_dict() for message in removed]})

    @extend_schema(
        summary="Keep the oldest messages and remove the rest",
        parameters=[openapi.CONVERSATION_ID],
        request=TruncateSerializer,
        responses={200: ConversationMetadataSerializer, **openapi.error_responses(404, body=True)},
    )
    @action(detail=True, methods=["post"])
    def truncate(self, request: Request, conversation_id: str) -> Response:
        """`POST conversations/{id}/truncate/` `{"keep": n}`: the metadata afterwards.

        Atomic. For "edit an earlier message" or "regenerate from here":
        keep the first `n` messages, then append the new ones. `keep` at or
        beyond the length changes nothing.
        """
        serializer = TruncateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = self.get_store().truncate(
            conversation_id,
            serializer.validated_data["keep"],
            owner=self.get_scope().owner_for("change"),
        )
        if result is None:
            raise NotFound()
        return Response(result.to_dict())

    @extend_schema(
        methods=["GET"],
        summary="Remaining lifetime of a conversation",
        parameters=[openapi.CONVERSATION_ID],
        responses={200: TTLResponseSerializer, **openapi.error_responses(400, 404)},
    )
    @extend_schema(
        methods=["PUT"],
        summary="Set the TTL (counts as an update: it expires ttl seconds from now)",
        parameters=[openapi.CONVERSATION_ID],
        request=TTLSerializer,
        responses={200: TTLResponseSerializer, **openapi.error_responses(404, body=True)},
    )
    @action(detail=True, methods=["get", "put"])
    def ttl(self, request: Request, conversation_id: str) -> Response:
        """`GET`: `{"ttl": seconds}` (-1 = never); `PUT {"ttl": N}` sets it (0 = never)."""
        store = self.get_store()
        if request.method == "PUT":
            serializer = TTLSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            ttl = serializer.validated_data["ttl"]
            if not store.set_ttl(conversation_id, ttl, owner=self.get_scope().owner_for("change")):
                raise NotFound()
            return Response({"ttl": ttl or -1})
        remaining = store.get_ttl(conversation_id, owner=self.get_scope().owner_for("view"))
        if remaining == -2:
            raise NotFound()
        return Response({"ttl": remaining})

    @extend_schema(
        summary="Store statistics (needs view_conversation)",
        responses={
            200: StoreStatsSerializer,
            **openapi.error_responses(),
            403: OpenApiResponse(ErrorSerializer, description="No view_conversation permission."),
        },
    )
    @action(detail=False, methods=["get"])
    def stats(self, request: Request) -> Response:
        """`GET conversations/stats/`: counts over the whole store (403 without
        `view_conversation`)."""
        return Response(self.get_store().get_stats().to_dict())
