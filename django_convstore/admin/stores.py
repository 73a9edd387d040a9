"""The store an admin page works on: ``?store=alias``, and how its failures read.

Every page of the section keeps the selected store in its links and forms
(:meth:`StoreChoice.query`); an unknown alias falls back to the default
store, and a store that cannot be built is reported, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _

from ..backends.base import BaseStore
from ..conf import DEFAULT_STORE_ALIAS
from ..exceptions import BackendError, BackendUnavailableError, ConvStoreError
from ..handler import stores

#: Query parameters of the admin pages.
STORE_VAR = "store"
SEARCH_VAR = "q"
OWNER_VAR = "owner"
PAGE_VAR = "p"
UPTO_VAR = "upto"


def configured_aliases() -> list[str]:
    """Every alias of ``settings.CONVSTORE``, the default one first."""
    aliases = list(stores.settings)
    if DEFAULT_STORE_ALIAS in aliases:
        aliases.remove(DEFAULT_STORE_ALIAS)
        aliases.insert(0, DEFAULT_STORE_ALIAS)
    return aliases


@dataclass
class StoreChoice:
    """The store an admin page works on, chosen with ``?store=alias``.

    ``store`` is None when the alias is unknown or its store could not be
    built; ``error`` then says why, in words fit for the page.
    """

    alias: str
    aliases: list[str]
    store: BaseStore | None = None
    error: str = ""
    requested_unknown: bool = False
    backends: dict[str, str] = field(default_factory=dict)

    @property
    def is_multi(self) -> bool:
        """Whether more than one store is configured (the selector is shown then)."""
        return len(self.aliases) > 1

    def params(self, **extra: Any) -> dict[str, str]:
        """Query parameters that keep this store selected, plus ``extra`` (None/"" dropped)."""
        params: dict[str, str] = {}
        if self.is_multi:
            params[STORE_VAR] = self.alias
        for key, value in extra.items():
            if value is not None and value != "":
                params[key] = str(value)
        return params

    def query(self, **extra: Any) -> str:
        """``?store=alias&...`` (or an empty string when there is nothing to keep)."""
        params = self.params(**extra)
        return f"?{urlencode(params)}" if params else ""

    def selector(self) -> list[dict[str, Any]]:
        """The store selector's entries: alias, backend name, query string, selected."""
        return [
            {
                "alias": alias,
                "backend": self.backends.get(alias, ""),
                "query": f"?{urlencode({STORE_VAR: alias})}",
                "selected": alias == self.alias,
            }
            for alias in self.aliases
        ]


def _backend_label(alias: str) -> str:
    config = stores.settings.get(alias)
    if not isinstance(config, Mapping):
        return ""
    if "type" in config:
        return str(config["type"])
    backend = config.get("BACKEND", "")
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", "")
    return name.rsplit(".", 1)[-1]


def choose_store(requested: str | None) -> StoreChoice:
    """Resolve ``?store=`` to a configured store; unknown aliases fall back to the default."""
    aliases = configured_aliases()
    backends = {alias: _backend_label(alias) for alias in aliases}
    fallback = aliases[0] if aliases else DEFAULT_STORE_ALIAS
    if requested and requested in aliases:
        choice = StoreChoice(alias=requested, aliases=aliases, backends=backends)
    else:
        choice = StoreChoice(
            alias=fallback,
            aliases=aliases,
            backends=backends,
            requested_unknown=bool(requested),
        )
    try:
        choice.store = stores[choice.alias]
    except ImproperlyConfigured as exc:
        choice.error = _("The store “%(alias)s” is misconfigured: %(error)s") % {
            "alias": choice.alias,
            "error": exc,
        }
    return choice


def describe_error(exc: ConvStoreError, alias: str) -> tuple[str, int]:
    """A message for the page and an HTTP status for a store failure."""
    if isinstance(exc, BackendUnavailableError):
        text = _("The store “%(alias)s” is unavailable right now: %(error)s")
        status = 503
    elif isinstance(exc, BackendError):
        text = _("The store “%(alias)s” answered with an error: %(error)s")
        status = 502
    else:
        text = _("The store “%(alias)s” failed: %(error)s")
        status = 503
    return text % {"alias": alias, "error": exc}, status
