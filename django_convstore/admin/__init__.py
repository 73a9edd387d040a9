"""The "Conversations" admin section: browse, read, re-time and delete conversations of any store.

Registered on the default admin site when ``django.contrib.admin`` autodiscovers
this module. The parts:

- :mod:`.options`: ``ConversationAdmin``, the views (list, detail with the
  transcript and TTL form, delete, history) and their permissions;
- :mod:`.stores`: the store a page works on (``?store=alias``) and how
  store failures read;
- :mod:`.transcript`: windows of a long transcript, read from the end;
- :mod:`.rendering`: how a message shows: roles, content parts, tool calls;
- :mod:`.display`: times, TTLs, JSON, titles, owners as users;
- :mod:`.forms`: the search and TTL forms; :mod:`.audit`: ``LogEntry`` rows.

To change page sizes or how owners show, unregister ``Conversation`` and
register a subclass of :class:`ConversationAdmin`.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import Conversation
from .options import ConversationAdmin

admin.site.register(Conversation, ConversationAdmin)

__all__ = ["ConversationAdmin"]
