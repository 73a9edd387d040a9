"""``ConversationAdmin``: the views of the "Conversations" section, through the store API.

Conversations are not ORM rows, so, like django-constance and django-rq, the
section is anchored on an unmanaged model (:class:`~django_convstore.models.Conversation`)
whose ``ModelAdmin`` replaces the standard views with views that go through
the store API. The standard URL names stay, so ``reverse()``, the admin index
and ``LogEntry.get_admin_url()`` work as for any model:

- ``admin:django_convstore_conversation_changelist`` (``?store=alias``, ``q``,
  ``owner``, ``p``)
- ``admin:django_convstore_conversation_change`` (arg: the ``quote()``-d id; ``upto``)
- ``admin:django_convstore_conversation_delete`` (arg: the ``quote()``-d id)
- ``admin:django_convstore_conversation_history`` (arg: the ``quote()``-d id)

Permissions are Django's: ``view_conversation`` to browse,
``change_conversation`` to set a TTL, ``delete_conversation`` to delete.
"""

from __future__ import annotations

from functools import update_wrapper
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.generic import RedirectView

from .. import validation
from ..backends.base import BaseStore
from ..exceptions import ConvStoreError, InvalidInputError
from ..models import Conversation
from ..types import ConversationMetadata
from .audit import log_conversation_actions
from .display import (
    OwnerDisplay,
    describe_ttl,
    expires_in,
    ms_to_datetime,
    pretty_json,
    title_of,
    user_owners,
)
from .forms import ConversationSearchForm, TTLForm
from .stores import (
    OWNER_VAR,
    PAGE_VAR,
    SEARCH_VAR,
    STORE_VAR,
    UPTO_VAR,
    StoreChoice,
    choose_store,
    describe_error,
)
from .transcript import load_transcript_window

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Conversation]
else:
    _ModelAdmin = admin.ModelAdmin

DELETE_ACTION = "delete_selected"
TEMPLATE_DIR = "admin/django_convstore"


class ConversationAdmin(_ModelAdmin):
    """Browse the conversations of every configured store through the store API."""

    #: Conversations per changelist page.
    list_per_page = 50
    #: Messages per transcript page on the detail view.
    messages_per_page = 50
    #: History entries per page.
    history_per_page = 100
    #: Ids and titles longer than this are clipped in the list (with "…"; the whole on hover).
    list_id_chars = 48
    list_title_chars = 60

    change_list_template = f"{TEMPLATE_DIR}/conversation_list.html"
    change_form_template = f"{TEMPLATE_DIR}/conversation_detail.html"
    delete_confirmation_template = f"{TEMPLATE_DIR}/conversation_delete.html"
    delete_selected_confirmation_template = f"{TEMPLATE_DIR}/conversation_bulk_delete.html"
    object_history_template = f"{TEMPLATE_DIR}/conversation_history.html"
    backend_error_template = f"{TEMPLATE_DIR}/backend_error.html"

    # -- permissions ---------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Conversations are created by applications, never in the admin."""
        return False

    # -- URLs ------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        """The standard admin URL names, routed to views that use the store API."""

        def wrap(view: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.admin_site.admin_view(view)(*args, **kwargs)

            wrapper.model_admin = self  # type: ignore[attr-defined]
            return update_wrapper(wrapper, view)

        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", wrap(self.changelist_view), name=f"{prefix}_changelist"),
            path("<path:object_id>/history/", wrap(self.history_view), name=f"{prefix}_history"),
            path("<path:object_id>/delete/", wrap(self.delete_view), name=f"{prefix}_delete"),
            path("<path:object_id>/change/", wrap(self.change_view), name=f"{prefix}_change"),
            path(
                "<path:object_id>/",
                wrap(
                    RedirectView.as_view(
                        pattern_name=f"{self.admin_site.name}:{prefix}_change", query_string=True
                    )
                ),
            ),
        ]

    def _url(self, name: str, choice: StoreChoice, *args: str, **params: Any) -> str:
        """An admin URL of this section that keeps the selected store (ids get ``quote()``-d)."""
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=[quote(arg) for arg in args],
            current_app=self.admin_site.name,
        )
        return url + choice.query(**params)

    # -- shared pieces -----------------------------------------------------------------------

    def _context(self, request: HttpRequest, choice: StoreChoice, **extra: Any) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "module_name": self.opts.verbose_name_plural,
            "store_choice": choice,
            "store_var": STORE_VAR,
            "changelist_url": self._url("changelist", choice),
            "changelist_base_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                current_app=self.admin_site.name,
            ),
            "has_view_permission": self.has_view_or_change_permission(request),
            "has_change_permission": self.has_change_permission(request),
            "has_delete_permission": self.has_delete_permission(request),
        }
        context.update(extra)
        return context

    def _render(
        self, request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
    ) -> TemplateResponse:
        return TemplateResponse(request, template, context, status=status)

    def _error_response(
        self, request: HttpRequest, choice: StoreChoice, message: str, status: int, **extra: Any
    ) -> TemplateResponse:
        context = self._context(
            request, choice, title=_("Conversations"), error_message=message, **extra
        )
        return self._render(request, self.backend_error_template, context, status=status)

    def _store_failure(
        self, request: HttpRequest, choice: StoreChoice, exc: ConvStoreError, **extra: Any
    ) -> TemplateResponse:
        message, status = describe_error(exc, choice.alias)
        return self._error_response(request, choice, message, status, **extra)

    def _object_choice(self, request: HttpRequest) -> StoreChoice | HttpResponse:
        """The store for an object view, or a response (redirect/error) when there is none."""
        choice = choose_store(request.GET.get(STORE_VAR))
        if choice.requested_unknown:
            self.message_user(
                request,
                _("There is no store “%(alias)s”.") % {"alias": request.GET.get(STORE_VAR)},
                messages.WARNING,
            )
            return HttpResponseRedirect(self._url("changelist", choice))
        if choice.store is None:
            return self._error_response(request, choice, choice.error, 503)
        return choice

    def _missing_redirect(
        self, request: HttpRequest, choice: StoreChoice, conversation_id: str
    ) -> HttpResponseRedirect:
        self.message_user(
            request,
            _(
                "The conversation “%(id)s” does not exist in the store “%(alias)s”. "
                "Perhaps it was deleted, or it expired?"
            )
            % {"id": conversation_id, "alias": choice.alias},
            messages.WARNING,
        )
        return HttpResponseRedirect(self._url("changelist", choice))

    # -- changelist --------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Paginated list (newest first) of the selected store, its stats, and bulk delete."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        choice = choose_store(request.GET.get(STORE_VAR))
        if request.method == "POST":
            return self._changelist_action(request, choice)

        search_form = ConversationSearchForm(request.GET)
        filters = search_form.filters()
        context = self._context(
            request,
            choice,
            title=_("Conversations"),
            search_form=search_form,
            search_query=filters["prefix"] or "",
            owner_query=filters["owner"] or "",
            search_var=SEARCH_VAR,
            owner_var=OWNER_VAR,
            unknown_store=request.GET.get(STORE_VAR) if choice.requested_unknown else "",
            has_filters=bool(filters["prefix"] or filters["owner"]),
            clear_filters_url=choice.query() or "?",
            delete_action=DELETE_ACTION,
            id_chars=self.list_id_chars,
            title_chars=self.list_title_chars,
            stats=None,
            rows=[],
            result_count=None,
            page_links=[],
            **(extra_context or {}),
        )
        status = 200
        if choice.store is None:
            context["error_message"] = choice.error
            status = 503
        else:
            try:
                context.update(self._changelist_page(request, choice, choice.store, filters))
            except InvalidInputError as exc:
                context["error_message"] = _("Invalid search: %(error)s") % {"error": exc}
            except ConvStoreError as exc:
                context["error_message"], status = describe_error(exc, choice.alias)
        return self._render(request, self.change_list_template, context, status=status)

    def _changelist_page(
        self,
        request: HttpRequest,
        choice: StoreChoice,
        store: BaseStore,
        filters: dict[str, Any],
    ) -> dict[str, Any]:
        per_page = self.list_per_page
        try:
            number = max(1, int(request.GET.get(PAGE_VAR, "1")))
        except ValueError:
            number = 1
        stats = store.get_stats()
        page = store.list_conversations(**filters, limit=per_page, offset=(number - 1) * per_page)
        if not page.items and page.total and number > 1:
            number = (page.total - 1) // per_page + 1
            page = store.list_conversations(
                **filters, limit=per_page, offset=(number - 1) * per_page
            )
        paginator = Paginator(range(page.total), per_page)
        page_obj = paginator.get_page(number)
        search = {SEARCH_VAR: filters["prefix"], OWNER_VAR: filters["owner"]}
        owners = self.owner_displays(request, [meta.owner for meta in page.items])
        rows = [self._changelist_row(choice, meta, owners) for meta in page.items]
        page_links = [
            {
                "number": item,
                "url": choice.query(**search, **{PAGE_VAR: item}),
                "current": item == page_obj.number,
                "ellipsis": item == paginator.ELLIPSIS,
            }
            for item in paginator.get_elided_page_range(page_obj.number, on_each_side=2)
        ]
        return {
            "stats": stats,
            "rows": rows,
            "has_titles": any(row["title"] for row in rows),
            "result_count": page.total,
            "page_obj": page_obj,
            "page_links": page_links if paginator.num_pages > 1 else [],
            "search_params": choice.params(**search),
        }

    def _changelist_row(
        self, choice: StoreChoice, meta: ConversationMetadata, owners: dict[str, OwnerDisplay]
    ) -> dict[str, Any]:
        return {
            "id": meta.conversation_id,
            "title": title_of(meta),
            "change_url": self._url("change", choice, meta.conversation_id),
            "owner": owners.get(meta.owner) if meta.owner else None,
            "owner_filter_url": choice.query(**{OWNER_VAR: meta.owner}) if meta.owner else "",
            "message_count": meta.message_count,
            "created": ms_to_datetime(meta.created_at),
            "updated": ms_to_datetime(meta.updated_at),
            "expires_in": expires_in(meta),
            "expires_at": ms_to_datetime(meta.expires_at),
        }

    def owner_displays(
        self, request: HttpRequest, owners: list[str | None]
    ) -> dict[str, OwnerDisplay]:
        """How each owner value of a page is shown: ``{value: OwnerDisplay}``.

        By default owners are Django users (the REST API records
        ``str(user.pk)``): the username, linked to the user's admin page
        when the viewer may see it, with the raw value on hover. Override
        for owners that come from elsewhere.
        """
        return user_owners(owners, request=request, admin_site=self.admin_site)

    def _owner_display(self, request: HttpRequest, owner: str | None) -> OwnerDisplay | None:
        return self.owner_displays(request, [owner]).get(owner) if owner else None

    def _changelist_action(self, request: HttpRequest, choice: StoreChoice) -> HttpResponse:
        """The bulk "delete selected" action: confirmation page, then delete on ``post=yes``."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        back = HttpResponseRedirect(request.get_full_path())
        if request.POST.get("action") != DELETE_ACTION:
            self.message_user(request, _("No action selected."), messages.WARNING)
            return back
        selected = list(dict.fromkeys(request.POST.getlist("_selected_action")))
        selected = [cid for cid in selected if _valid_id(cid)]
        if not selected:
            self.message_user(
                request,
                _(
                    "Items must be selected in order to perform actions on them. "
                    "No items have been changed."
                ),
                messages.WARNING,
            )
            return back
        if choice.requested_unknown or choice.store is None:
            return self._error_response(
                request, choice, choice.error or _("Unknown store."), 503 if choice.error else 400
            )
        if request.POST.get("post") != "yes":
            context = self._context(
                request,
                choice,
                title=_("Delete multiple conversations"),
                selected=selected,
                action=DELETE_ACTION,
                action_url=request.get_full_path(),
            )
            return self._render(request, self.delete_selected_confirmation_template, context)
        deleted: list[str] = []
        try:
            for cid in selected:
                if choice.store.delete(cid):
                    deleted.append(cid)
        except ConvStoreError as exc:
            self._log_deletions(request, choice, deleted)
            return self._store_failure(request, choice, exc)
        self._log_deletions(request, choice, deleted)
        self.message_user(
            request,
            ngettext(
                "Successfully deleted %(count)d conversation.",
                "Successfully deleted %(count)d conversations.",
                len(deleted),
            )
            % {"count": len(deleted)},
            messages.SUCCESS,
        )
        return back

    def _log_deletions(self, request: HttpRequest, choice: StoreChoice, ids: list[str]) -> None:
        log_conversation_actions(
            request.user.pk,
            ids,
            DELETION,
            _("Deleted from the store “%(alias)s”.") % {"alias": choice.alias},
        )

    # -- detail / TTL -------------------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Metadata, the transcript (one page of bubbles) and, with change permission, the TTL."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        cid = unquote(object_id)
        choice = self._object_choice(request)
        if isinstance(choice, HttpResponse):
            return choice
        store = choice.store
        assert store is not None
        ttl_form = None
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            ttl_form = TTLForm(request.POST)
            if ttl_form.is_valid():
                return self._set_ttl(request, choice, store, cid, ttl_form.cleaned_data["ttl"])
        try:
            upto = _int_or_none(request.GET.get(UPTO_VAR))
            window = load_transcript_window(store, cid, upto=upto, size=self.messages_per_page)
        except InvalidInputError:
            window = None
        except ConvStoreError as exc:
            return self._store_failure(request, choice, exc, conversation_id=cid)
        if window is None:
            return self._missing_redirect(request, choice, cid)
        meta = window.conversation.metadata
        if ttl_form is None and self.has_change_permission(request):
            ttl_form = TTLForm(initial={"ttl": meta.ttl or 0})

        def page_url(upto: int | None) -> str:
            return self._url("change", choice, cid, **{UPTO_VAR: upto}) + "#transcript"

        owner = self._owner_display(request, meta.owner)
        context = self._context(
            request,
            choice,
            title=_("Conversation"),
            subtitle=cid,
            object=Conversation(conversation_id=cid),
            object_id=cid,
            meta=meta,
            owner=owner,
            owner_filter_url=self._url("changelist", choice, **{OWNER_VAR: meta.owner})
            if meta.owner
            else "",
            conversation_title=title_of(meta),
            created=ms_to_datetime(meta.created_at),
            updated=ms_to_datetime(meta.updated_at),
            expires_at=ms_to_datetime(meta.expires_at),
            expires_in=expires_in(meta),
            ttl_text=describe_ttl(meta.ttl),
            metadata_json=pretty_json(meta.metadata) if meta.metadata else "",
            window=window,
            window_first=window.start + 1 if window.rows else 0,
            older_url=page_url(window.older_end) if window.has_older else "",
            oldest_url=page_url(window.first_end) if window.has_older else "",
            newer_url=page_url(window.newer_end) if window.has_newer else "",
            newest_url=page_url(None) if window.has_newer else "",
            ttl_form=ttl_form,
            form_url=self._url("change", choice, cid),
            delete_url=self._url("delete", choice, cid),
            history_url=self._url("history", choice, cid),
            **(extra_context or {}),
        )
        return self._render(request, self.change_form_template, context)

    def _set_ttl(
        self, request: HttpRequest, choice: StoreChoice, store: BaseStore, cid: str, ttl: int
    ) -> HttpResponse:
        try:
            before = store.load(cid, last=0)
            changed = before is not None and store.set_ttl(cid, ttl)
        except InvalidInputError:
            changed = False
        except ConvStoreError as exc:
            return self._store_failure(request, choice, exc, conversation_id=cid)
        if not changed or before is None:
            return self._missing_redirect(request, choice, cid)
        log_conversation_actions(
            request.user.pk,
            [cid],
            CHANGE,
            _("Changed the TTL from %(old)s to %(new)s in the store “%(alias)s”.")
            % {
                "old": describe_ttl(before.metadata.ttl),
                "new": describe_ttl(ttl or None),
                "alias": choice.alias,
            },
        )
        self.message_user(
            request,
            _("The TTL of “%(id)s” is now %(ttl)s.")
            % {"id": cid, "ttl": describe_ttl(ttl or None)},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._url("change", choice, cid))

    # -- delete --------------------------------------------------------------------------------

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The usual confirmation page on GET; the deletion itself only on POST (with CSRF)."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        cid = unquote(object_id)
        choice = self._object_choice(request)
        if isinstance(choice, HttpResponse):
            return choice
        store = choice.store
        assert store is not None
        try:
            if request.method == "POST" and request.POST.get("post") == "yes":
                deleted = store.delete(cid)
            else:
                head = store.load(cid, last=0)
                if head is None:
                    return self._missing_redirect(request, choice, cid)
                context = self._context(
                    request,
                    choice,
                    title=_("Are you sure?"),
                    subtitle=cid,
                    object=Conversation(conversation_id=cid),
                    object_id=cid,
                    object_name=self.opts.verbose_name,
                    meta=head.metadata,
                    owner=self._owner_display(request, head.metadata.owner),
                    change_url=self._url("change", choice, cid),
                    delete_url=self._url("delete", choice, cid),
                    **(extra_context or {}),
                )
                return self._render(request, self.delete_confirmation_template, context)
        except InvalidInputError:
            return self._missing_redirect(request, choice, cid)
        except ConvStoreError as exc:
            return self._store_failure(request, choice, exc, conversation_id=cid)
        if not deleted:
            return self._missing_redirect(request, choice, cid)
        self._log_deletions(request, choice, [cid])
        self.message_user(
            request,
            _("The conversation “%(id)s” was deleted successfully.") % {"id": cid},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._url("changelist", choice))

    # -- history -------------------------------------------------------------------------------

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The admin ``LogEntry`` rows of a conversation (they outlive the conversation)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        cid = unquote(object_id)
        choice = choose_store(request.GET.get(STORE_VAR))
        entries = (
            LogEntry.objects.filter(
                object_id=cid,
                content_type=ContentType.objects.get_for_model(
                    Conversation, for_concrete_model=False
                ),
            )
            .select_related("user")
            .order_by("action_time")
        )
        paginator = Paginator(entries, self.history_per_page)
        page_obj = paginator.get_page(request.GET.get(PAGE_VAR))
        context = self._context(
            request,
            choice,
            title=_("Change history: %s") % cid,
            subtitle=None,
            object=Conversation(conversation_id=cid),
            object_id=cid,
            action_list=page_obj,
            page_links=[
                {
                    "number": item,
                    "url": choice.query(**{PAGE_VAR: item}),
                    "current": item == page_obj.number,
                    "ellipsis": item == paginator.ELLIPSIS,
                }
                for item in paginator.get_elided_page_range(page_obj.number)
            ]
            if paginator.num_pages > 1
            else [],
            change_url=self._url("change", choice, cid),
            **(extra_context or {}),
        )
        return self._render(request, self.object_history_template, context)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _valid_id(value: str) -> bool:
    try:
        validation.validate_conversation_id(value)
    except InvalidInputError:
        return False
    return True
