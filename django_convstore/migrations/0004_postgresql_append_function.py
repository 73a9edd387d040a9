"""0.2, PostgreSQL only: ``convstore_append``, the database backend's append as one function.

An append is the hottest write. As one PL/pgSQL function it costs one round
trip like the other single-statement writes, but runs as plain statements
with plans the server keeps per session, and each statement after the row
lock sees everything committed before it (no stale snapshot to check):
measured faster than the plain driver's UPDATE + INSERT transaction it
replaces (see ``docs/backends/database.md``). The function is part of the
schema: a later change to it comes with a migration (``CREATE OR REPLACE``).
Other databases are left alone.
"""

from __future__ import annotations

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION convstore_append(
    p_ns text, p_cid text, p_now bigint, p_owner text, p_ids text[], p_docs text[],
    p_touch boolean, p_ttl bigint, p_expires bigint
)
RETURNS TABLE (status text, created_at bigint, updated_at bigint, ttl bigint, owner text,
               message_count bigint, metadata text)
LANGUAGE plpgsql VOLATILE AS $convstore$
#variable_conflict use_column
DECLARE
    r record;
    new_id bigint;
    added bigint;
    n integer := coalesce(cardinality(p_ids), 0);
BEGIN
    -- Lock the conversation row, or create it (a concurrent creator may win: lock theirs).
    LOOP
        SELECT c.id, c.owner, c.expires_at, c.next_position INTO r
        FROM {conv} c WHERE c.namespace = p_ns AND c.conversation_id = p_cid FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO {conv} AS c (namespace, conversation_id, owner, created_at, updated_at, ttl,
                                 expires_at, message_count, next_position, metadata)
        VALUES (p_ns, p_cid, p_owner, p_now, p_now, p_ttl, p_expires, n, n, '{}')
        ON CONFLICT (namespace, conversation_id) DO NOTHING
        RETURNING c.id INTO new_id;
        IF new_id IS NOT NULL THEN
            INSERT INTO {msg} (conversation_id, position, message_id, document)
            SELECT new_id, t.ord - 1, t.mid, t.doc
            FROM unnest(p_ids, p_docs) WITH ORDINALITY AS t(mid, doc, ord);
            RETURN QUERY SELECT 'created'::text, p_now, p_now, p_ttl, p_owner, n::bigint,
                                '{}'::text;
            RETURN;
        END IF;
    END LOOP;
    IF r.expires_at IS NOT NULL AND r.expires_at <= p_now THEN
        -- Expired counts as missing: its messages and ids are forgotten, whoever owned it.
        DELETE FROM {msg} m WHERE m.conversation_id = r.id;
        INSERT INTO {msg} (conversation_id, position, message_id, document)
        SELECT r.id, r.next_position + t.ord - 1, t.mid, t.doc
        FROM unnest(p_ids, p_docs) WITH ORDINALITY AS t(mid, doc, ord);
        RETURN QUERY UPDATE {conv} c SET owner = p_owner, created_at = p_now, updated_at = p_now,
            ttl = p_ttl, expires_at = p_expires, message_count = n,
            next_position = c.next_position + n, metadata = '{}'
        WHERE c.id = r.id
        RETURNING 'updated'::text, c.created_at, c.updated_at, c.ttl::bigint, c.owner::text,
                  c.message_count::bigint, c.metadata::text;
        RETURN;
    END IF;
    IF p_owner IS NOT NULL AND r.owner IS DISTINCT FROM p_owner THEN
        RETURN QUERY SELECT 'refused'::text, NULL::bigint, NULL::bigint, NULL::bigint,
                            NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    -- Ids already present are skipped; positions of skipped ones stay unused.
    INSERT INTO {msg} (conversation_id, position, message_id, document)
    SELECT r.id, r.next_position + t.ord - 1, t.mid, t.doc
    FROM unnest(p_ids, p_docs) WITH ORDINALITY AS t(mid, doc, ord)
    ON CONFLICT (conversation_id, message_id) DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    IF added = 0 THEN
        RETURN QUERY SELECT 'kept'::text, c.created_at, c.updated_at, c.ttl::bigint,
                            c.owner::text, c.message_count::bigint, c.metadata::text
        FROM {conv} c WHERE c.id = r.id;
        RETURN;
    END IF;
    RETURN QUERY UPDATE {conv} c SET message_count = c.message_count + added,
        next_position = c.next_position + n,
        updated_at = CASE WHEN p_touch THEN p_now ELSE c.updated_at END,
        expires_at = CASE WHEN p_touch THEN p_now + c.ttl * 1000 ELSE c.expires_at END
    WHERE c.id = r.id
    RETURNING 'updated'::text, c.created_at, c.updated_at, c.ttl::bigint, c.owner::text,
              c.message_count::bigint, c.metadata::text;
END
$convstore$;
"""


def create_function(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    conversations = apps.get_model("django_convstore", "StoredConversation")._meta.db_table
    messages = apps.get_model("django_convstore", "StoredMessage")._meta.db_table
    schema_editor.execute(
        FUNCTION.replace("{conv}", quote(conversations)).replace("{msg}", quote(messages))
    )


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS convstore_append("
            "text, text, bigint, text, text[], text[], boolean, bigint, bigint)"
        )


class Migration(migrations.Migration):
    dependencies = [("django_convstore", "0003_message_ids_unique")]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
