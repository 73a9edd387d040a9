"""The SQL statements of the database backend, per vendor.

``{conv}`` and ``{msg}`` stand for the (quoted) tables of
:class:`~django_convstore.models.StoredConversation` and
:class:`~django_convstore.models.StoredMessage`; :func:`render` fills them in.
Parameters are named (``%(name)s``), which every Django database backend
accepts.

PostgreSQL: every write is one statement (data-modifying CTEs), so in
autocommit it costs one round trip. Each starts by locking the conversation
row (``SELECT … FOR UPDATE``), creating it when missing (``INSERT … ON
CONFLICT DO NOTHING``), checks owner and expiry on the locked row, and
``RETURNING`` gives back what the caller needs. Under READ COMMITTED a
statement that had to wait for the row lock sees the locked row's newest
version but the *other* rows (messages) as they were when it started; the
statements that read or delete messages therefore compare the locked row's
version (``xmin``) with the one their snapshot saw, and write nothing when
they differ (``fresh`` is false): the caller then takes the lock first and
runs the statement again (see :mod:`.postgresql`). Appends need no fresh
snapshot: ``ON CONFLICT (conversation_id, message_id) DO NOTHING`` checks ids
against the newest committed rows, positions come from the locked row, and
the message count from what was actually inserted.

SQLite and MySQL/MariaDB: short statements inside a transaction that holds the
database write lock (SQLite, ``BEGIN IMMEDIATE``) or the row lock (MySQL,
``SELECT … FOR UPDATE``); see :mod:`.locking`.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from ...models import StoredConversation, StoredMessage

#: The conversation columns handed back by reads and writes (see ``rows.META_COLUMNS``).
META = "{a}.created_at, {a}.updated_at, {a}.ttl, {a}.owner, {a}.message_count, {a}.metadata"


def render(template: str, connection: BaseDatabaseWrapper) -> str:
    """``template`` with the table names quoted for ``connection``."""
    quote = connection.ops.quote_name
    return template.replace("{conv}", quote(StoredConversation._meta.db_table)).replace(
        "{msg}", quote(StoredMessage._meta.db_table)
    )


def meta(alias: str) -> str:
    return META.replace("{a}", alias)


# -- shared by every vendor ---------------------------------------------------------------------

_WHERE_ID = "{a}.namespace = %(ns)s AND {a}.conversation_id = %(cid)s"
_LIVE = "({a}.expires_at IS NULL OR {a}.expires_at > %(now)s)"


def where(alias: str, *, live: bool, owner: bool) -> str:
    """The conversation ``alias`` by id; optionally only live, optionally only the owner's."""
    parts = [_WHERE_ID]
    if live:
        parts.append(_LIVE)
    if owner:
        parts.append("{a}.owner = %(owner)s")
    return " AND ".join(parts).replace("{a}", alias)


def exists(*, owner: bool) -> str:
    return f"SELECT 1 FROM {{conv}} c WHERE {where('c', live=True, owner=owner)}"


def get_ttl(*, owner: bool) -> str:
    return f"SELECT c.expires_at FROM {{conv}} c WHERE {where('c', live=True, owner=owner)}"


def set_ttl(*, owner: bool) -> str:
    return (
        "UPDATE {conv} SET ttl = %(ttl)s, updated_at = %(now)s, expires_at = %(expires)s "
        f"WHERE {where('{conv}', live=True, owner=owner)}"
    )


# -- loads: one statement -------------------------------------------------------------------------


def _tail(aggregate: str, last: int | None) -> str:
    """A scalar subquery joining the documents of conversation ``c`` (all, or the last N)."""
    if last == 0:
        return "NULL"
    if last is None:
        rows = (
            "SELECT m.document AS d, m.position AS p FROM {msg} m WHERE m.conversation_id = c.id"
        )
    else:
        rows = (
            "SELECT m.document AS d, m.position AS p FROM {msg} m "
            "WHERE m.conversation_id = c.id ORDER BY m.position DESC LIMIT %(last)s"
        )
    return f"({aggregate.format(rows=rows)})"


#: PostgreSQL: ``string_agg`` with its own ORDER BY.
PG_AGGREGATE = "SELECT string_agg(t.d, ',' ORDER BY t.p) FROM ({rows}) AS t"
#: SQLite: ``group_concat`` follows the order of an ordered subquery.
SQLITE_AGGREGATE = (
    "SELECT group_concat(o.d, ',') FROM (SELECT t.d FROM ({rows}) AS t ORDER BY t.p) AS o"
)


def load(aggregate: str, *, live: bool, owner: bool, last: int | None) -> str:
    """The conversation row and its documents joined by commas, in one row.

    A conversation the caller may not see matches no row, so its messages are
    never read.
    """
    return (
        f"SELECT {meta('c')}, {_tail(aggregate, last)} FROM {{conv}} c "
        f"WHERE {where('c', live=live, owner=owner)}"
    )


def mysql_load(*, live: bool, owner: bool, last: int | None) -> str:
    """MySQL/MariaDB: the conversation row, then one row per document (position order).

    ``GROUP_CONCAT`` would be cut at ``group_concat_max_len``; a UNION of the
    conversation row and its message rows is still one statement (one read view).
    """
    head = f"SELECT -1 AS p, c.metadata AS d, {meta('c').replace('c.metadata', 'NULL')} "
    head += f"FROM {{conv}} c WHERE {where('c', live=live, owner=owner)}"
    if last == 0:
        return head
    body = (
        "SELECT m.position AS p, m.document AS d, NULL AS c1, NULL AS c2, NULL AS c3, "
        "NULL AS c4, NULL AS c5, NULL AS c6 "
        f"FROM {{conv}} c JOIN {{msg}} m ON m.conversation_id = c.id "
        f"WHERE {where('c', live=live, owner=owner)}"
    )
    if last is not None:
        body = f"SELECT * FROM ({body} ORDER BY m.position DESC LIMIT %(last)s) AS tail"
    return f"SELECT * FROM ({head} UNION ALL {body}) AS rows_ ORDER BY p"


# -- PostgreSQL writes: one statement each ------------------------------------------------------

_PG_OWNER_OK = "(%(owner)s::text IS NULL OR {a}.owner = %(owner)s)"

#: The conversation row, locked (its newest version), with the version the snapshot saw.
_PG_LOCK = """
existing AS MATERIALIZED (
    SELECT c.id, c.owner, c.created_at, c.updated_at, c.ttl, c.expires_at, c.message_count,
           c.next_position, c.metadata,
           (c.expires_at IS NULL OR c.expires_at > %(now)s) AS live,
           c.xmin::text AS version
    FROM {conv} c
    WHERE c.namespace = %(ns)s AND c.conversation_id = %(cid)s
    FOR UPDATE
),
snap AS (
    SELECT s.xmin::text AS version FROM {conv} s
    WHERE s.namespace = %(ns)s AND s.conversation_id = %(cid)s
),
locked AS MATERIALIZED (
    SELECT e.*, e.version IS NOT DISTINCT FROM (SELECT version FROM snap) AS fresh
    FROM existing e
)"""

_PG_INPUT = """
input AS (
    SELECT t.mid, t.doc, t.ord
    FROM unnest(%(ids)s::text[], %(docs)s::text[]) WITH ORDINALITY AS t(mid, doc, ord)
)"""

#: Insert the conversation row when none existed when the statement started.
_PG_CREATE = """
created AS (
    INSERT INTO {conv} (namespace, conversation_id, owner, created_at, updated_at, ttl,
                        expires_at, message_count, next_position, metadata)
    SELECT %(ns)s, %(cid)s, %(owner)s, %(created_at)s, %(updated_at)s, %(ttl)s, %(expires)s,
           %(n)s, %(n)s, %(metadata)s
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    ON CONFLICT (namespace, conversation_id) DO NOTHING
    RETURNING id
)"""

#: ``{old}`` merged with ``%(metadata)s`` like ``{**old, **new}``, values kept as written
#: (``json``, not ``jsonb``). NULL when a key could hold a NUL (``json_each`` cannot
#: return it): the caller then merges in Python.
_PG_MERGE = """CASE WHEN strpos({old}, '\\u0000') = 0
                 AND strpos(%(metadata)s, '\\u0000') = 0 THEN (
    SELECT coalesce(json_object_agg(k, v), '{}'::json)::text FROM (
        SELECT o.key AS k, o.value AS v FROM json_each({old}::json) AS o
        WHERE NOT EXISTS (SELECT 1 FROM json_each(%(metadata)s::json) AS n WHERE n.key = o.key)
        UNION ALL
        SELECT n.key, n.value FROM json_each(%(metadata)s::json) AS n
    ) AS pairs
) END"""

#: An append: the function ``convstore_append`` (migration 0004) locks or creates the row,
#: checks owner and expiry, inserts the new messages and updates the counters.
PG_APPEND = (
    "SELECT * FROM convstore_append(%(ns)s::text, %(cid)s::text, %(now)s::bigint, "
    "%(owner)s::text, %(ids)s::text[], %(docs)s::text[], %(touch)s::boolean, "
    "%(ttl)s::bigint, %(expires)s::bigint)"
)


def _pg_replace(target_condition: str, sets: str, merged: str | None) -> str:
    """save / create / put: replace a conversation's messages (creating it when missing)."""
    merged_column = f", {_PG_MERGE.replace('{old}', 'l.metadata')} AS merged" if merged else ""
    mergeable = " AND (NOT l.live OR l.merged IS NOT NULL)" if merged else ""
    return (
        "WITH"
        + _PG_INPUT
        + ","
        + _PG_LOCK
        + f""",
candidate AS MATERIALIZED (SELECT l.*{merged_column} FROM locked l),
target AS MATERIALIZED (
    SELECT l.* FROM candidate l WHERE l.fresh AND ({target_condition}){mergeable}
),"""
        + _PG_CREATE
        + """,
purge AS (
    DELETE FROM {msg} m USING target t WHERE m.conversation_id = t.id RETURNING 1
),
updated AS (
    UPDATE {conv} c SET """
        + sets
        + """,
        message_count = %(n)s,
        next_position = c.next_position + %(n)s
    FROM target t CROSS JOIN (SELECT count(*) FROM purge) AS p
    WHERE c.id = t.id
    RETURNING c.id, c.next_position - %(n)s AS base, """
        + meta("c")
        + """
),
added AS (
    INSERT INTO {msg} (conversation_id, position, message_id, document)
    SELECT u.id, u.base + i.ord - 1, i.mid, i.doc FROM updated u CROSS JOIN input i
    UNION ALL
    SELECT c.id, i.ord - 1, i.mid, i.doc FROM created c CROSS JOIN input i
    RETURNING 1
)
SELECT 'updated', """
        + meta("u")
        + """, (SELECT count(*) FROM added) FROM updated u
UNION ALL SELECT 'created', NULL, NULL, NULL, NULL, NULL, NULL, (SELECT count(*) FROM added)
    FROM created
UNION ALL SELECT CASE WHEN l.live AND %(owner)s::text IS NOT NULL
                       AND l.owner IS DISTINCT FROM %(owner)s THEN 'refused'
                      WHEN l.live THEN 'live' ELSE 'retry' END,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM locked l WHERE NOT EXISTS (SELECT 1 FROM target)
"""
    )


_PG_SAVE_SETS = """
        created_at = CASE WHEN t.live THEN c.created_at ELSE %(now)s END,
        updated_at = %(now)s, ttl = %(ttl)s, expires_at = %(expires)s,
        owner = CASE WHEN t.live THEN c.owner ELSE %(owner)s END,
        metadata = {metadata}"""

#: save: the caller's own or an ownerless-but-unscoped live conversation, or an expired one.
PG_SAVE = _pg_replace(
    "NOT l.live OR " + _PG_OWNER_OK.replace("{a}", "l"),
    _PG_SAVE_SETS.replace("{metadata}", "CASE WHEN t.live THEN c.metadata ELSE %(metadata)s END"),
    merged=None,
)
#: save with custom metadata merged over a live conversation's (in SQL, see _PG_MERGE).
PG_SAVE_MERGE = _pg_replace(
    "NOT l.live OR " + _PG_OWNER_OK.replace("{a}", "l"),
    _PG_SAVE_SETS.replace("{metadata}", "CASE WHEN t.live THEN t.merged ELSE %(metadata)s END"),
    merged="yes",
)
#: save holding the lock, with the metadata already merged (in Python) as it is to be stored.
PG_SAVE_SET = _pg_replace(
    "NOT l.live OR " + _PG_OWNER_OK.replace("{a}", "l"),
    _PG_SAVE_SETS.replace("{metadata}", "%(metadata)s"),
    merged=None,
)
#: create: only a missing or expired conversation.
PG_CREATE = _pg_replace(
    "NOT l.live",
    """
        created_at = %(now)s, updated_at = %(now)s, ttl = %(ttl)s, expires_at = %(expires)s,
        owner = %(owner)s, metadata = %(metadata)s""",
    merged=None,
)
#: put: whatever is there, every field as given.
PG_PUT = _pg_replace(
    "TRUE",
    """
        created_at = %(created_at)s, updated_at = %(updated_at)s, ttl = %(ttl)s,
        expires_at = %(expires)s, owner = %(owner)s, metadata = %(metadata)s""",
    merged=None,
)

_PG_LOCK_VISIBLE = (
    """
existing AS MATERIALIZED (
    SELECT c.id, """
    + meta("c")
    + """, c.xmin::text AS version
    FROM {conv} c
    WHERE {where}
    FOR UPDATE
),
snap AS (
    SELECT s.xmin::text AS version FROM {conv} s
    WHERE s.namespace = %(ns)s AND s.conversation_id = %(cid)s
),
target AS MATERIALIZED (
    SELECT e.* FROM existing e WHERE e.version IS NOT DISTINCT FROM (SELECT version FROM snap)
)"""
)


def _pg_lock_visible(*, owner: bool) -> str:
    """The live conversation (the owner's, with ``owner``), locked; ``target`` if fresh."""
    return _PG_LOCK_VISIBLE.replace("{where}", where("c", live=True, owner=owner))


def pg_pop(*, owner: bool) -> str:
    return (
        "WITH"
        + _pg_lock_visible(owner=owner)
        + """,
removed AS (
    DELETE FROM {msg} m USING (
        SELECT v.id FROM {msg} v WHERE v.conversation_id = (SELECT t.id FROM target t)
        ORDER BY v.position DESC LIMIT %(count)s
    ) AS victim
    WHERE m.id = victim.id
    RETURNING m.position, m.document
),
updated AS (
    UPDATE {conv} c SET message_count = c.message_count - r.n,
        updated_at = %(now)s, expires_at = %(now)s + c.ttl * 1000
    FROM target t CROSS JOIN (SELECT count(*) AS n FROM removed) AS r
    WHERE c.id = t.id AND r.n > 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM existing), (SELECT count(*) FROM target),
       (SELECT count(*) FROM updated),
       (SELECT string_agg(r.document, ',' ORDER BY r.position) FROM removed r)
"""
    )


def pg_truncate(*, owner: bool) -> str:
    return (
        "WITH"
        + _pg_lock_visible(owner=owner)
        + """,
removed AS (
    DELETE FROM {msg} m USING (
        SELECT v.id FROM {msg} v WHERE v.conversation_id = (SELECT t.id FROM target t)
        ORDER BY v.position DESC
        LIMIT (SELECT greatest(t.message_count - %(keep)s, 0) FROM target t)
    ) AS victim
    WHERE m.id = victim.id
    RETURNING 1
),
updated AS (
    UPDATE {conv} c SET message_count = c.message_count - r.n,
        updated_at = %(now)s, expires_at = %(now)s + c.ttl * 1000
    FROM target t CROSS JOIN (SELECT count(*) AS n FROM removed) AS r
    WHERE c.id = t.id AND r.n > 0
    RETURNING """
        + meta("c")
        + """, r.n
)
SELECT 'updated', u.* FROM updated u
UNION ALL SELECT CASE WHEN e.message_count <= %(keep)s THEN 'kept' ELSE 'retry' END, """
        + meta("e")
        + """, 0
    FROM existing e WHERE NOT EXISTS (SELECT 1 FROM updated)
"""
    )


def pg_delete(*, owner: bool) -> str:
    where_clause = (
        where("c", live=True, owner=True) if owner else where("c", live=False, owner=False)
    )
    return (
        "WITH"
        + _PG_LOCK_VISIBLE.replace("{where}", where_clause)
        + """,
purge AS (
    DELETE FROM {msg} m USING target t WHERE m.conversation_id = t.id RETURNING 1
),
gone AS (
    DELETE FROM {conv} c USING target t CROSS JOIN (SELECT count(*) FROM purge) AS p
    WHERE c.id = t.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM existing), (SELECT count(*) FROM gone)
"""
    )


def pg_update_metadata(*, owner: bool, replace: bool) -> str:
    new = "%(metadata)s" if replace else _PG_MERGE.replace("{old}", "c.metadata")
    guard = "" if replace else " AND strpos(c.metadata, '\\u0000') = 0"
    guard += "" if replace else " AND strpos(%(metadata)s, '\\u0000') = 0"
    return (
        f"UPDATE {{conv}} c SET metadata = {new}, updated_at = %(now)s, "
        "expires_at = %(now)s + c.ttl * 1000 "
        f"WHERE {where('c', live=True, owner=owner)}{guard} RETURNING {meta('c')}"
    )


#: The fallback path's first statement: lock the conversation row, then run the write.
PG_LOCK = (
    "SELECT (c.expires_at IS NULL OR c.expires_at > %(now)s), c.owner, c.metadata "
    f"FROM {{conv}} c WHERE {where('c', live=False, owner=False)} FOR UPDATE"
)


# -- SQLite and MySQL/MariaDB: statements inside a locking transaction ---------------------------

#: The conversation row (write-locked by the transaction, or ``FOR UPDATE`` on MySQL).
LOCK_COLUMNS = (
    "c.id, c.created_at, c.updated_at, c.ttl, c.owner, c.message_count, c.metadata, "
    "c.expires_at, c.next_position"
)


def lock(suffix: str) -> str:
    condition = where("c", live=False, owner=False)
    return f"SELECT {LOCK_COLUMNS} FROM {{conv}} c WHERE {condition}{suffix}"


INSERT_CONVERSATION = (
    "INSERT INTO {conv} (namespace, conversation_id, owner, created_at, updated_at, ttl, "
    "expires_at, message_count, next_position, metadata) VALUES "
    "(%(ns)s, %(cid)s, %(owner)s, %(created_at)s, %(updated_at)s, %(ttl)s, %(expires)s, "
    "%(n)s, %(n)s, %(metadata)s)"
)

REWRITE_CONVERSATION = (
    "UPDATE {conv} SET owner = %(owner)s, created_at = %(created_at)s, "
    "updated_at = %(updated_at)s, ttl = %(ttl)s, expires_at = %(expires)s, "
    "message_count = %(n)s, next_position = next_position + %(n)s, metadata = %(metadata)s "
    "WHERE id = %(id)s"
)

BUMP_CONVERSATION = (
    "UPDATE {conv} SET message_count = message_count + %(added)s, "
    "next_position = next_position + %(n)s, updated_at = %(updated_at)s, "
    "expires_at = %(expires)s WHERE id = %(id)s"
)

SHRINK_CONVERSATION = (
    "UPDATE {conv} SET message_count = message_count - %(removed)s, "
    "updated_at = %(now)s, expires_at = %(expires)s WHERE id = %(id)s"
)

TOUCH_METADATA = (
    "UPDATE {conv} SET metadata = %(metadata)s, updated_at = %(now)s, expires_at = %(expires)s "
    "WHERE id = %(id)s"
)

#: MySQL/MariaDB's ``set_ttl`` of the row it locked (see ``locking.MysqlOperations.set_ttl``).
SET_TTL = (
    "UPDATE {conv} SET ttl = %(ttl)s, updated_at = %(now)s, expires_at = %(expires)s "
    "WHERE id = %(id)s"
)

PURGE_MESSAGES = "DELETE FROM {msg} WHERE conversation_id = %(id)s"
DELETE_CONVERSATION = "DELETE FROM {conv} WHERE id = %(id)s"

TAIL_DOCUMENTS = (
    "SELECT position, document FROM {msg} WHERE conversation_id = %(id)s "
    "ORDER BY position DESC LIMIT %(count)s"
)
CUT_POSITION = (
    "SELECT position FROM {msg} WHERE conversation_id = %(id)s "
    "ORDER BY position DESC LIMIT 1 OFFSET %(skip)s"
)
DROP_FROM = "DELETE FROM {msg} WHERE conversation_id = %(id)s AND position >= %(position)s"

#: SQLite's append to a live conversation of the caller: positions from the row, in one INSERT.
SQLITE_APPEND = (
    "INSERT INTO {msg} (conversation_id, position, message_id, document) "
    "SELECT c.id, c.next_position + v.column1, v.column2, v.column3 "
    "FROM {conv} c, (VALUES {rows}) AS v "
    "WHERE c.namespace = %s AND c.conversation_id = %s "
    "AND (c.expires_at IS NULL OR c.expires_at > %s) AND (%s IS NULL OR c.owner = %s) "
    "ON CONFLICT (conversation_id, message_id) DO NOTHING"
)
#: … and its counters, handing back the metadata.
SQLITE_APPEND_COUNT = (
    "UPDATE {conv} SET message_count = message_count + %(added)s, "
    "next_position = next_position + %(n)s, "
    "updated_at = CASE WHEN %(touch)s THEN %(now)s ELSE updated_at END, "
    "expires_at = CASE WHEN %(touch)s THEN %(now)s + ttl * 1000 ELSE expires_at END "
    "WHERE namespace = %(ns)s AND conversation_id = %(cid)s "
    "RETURNING created_at, updated_at, ttl, owner, message_count, metadata"
)

#: Multi-row inserts that skip ids the conversation already holds.
SQLITE_INSERT = (
    "INSERT INTO {msg} (conversation_id, position, message_id, document) VALUES {rows} "
    "ON CONFLICT (conversation_id, message_id) DO NOTHING"
)
MYSQL_INSERT = (
    "INSERT IGNORE INTO {msg} (conversation_id, position, message_id, document) VALUES {rows}"
)
