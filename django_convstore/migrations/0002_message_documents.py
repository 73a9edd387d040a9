"""0.2: each message becomes one JSON document; positions only grow; ids unique per conversation.

Schema steps, then the data step (:func:`convert`), which for every existing
0.1 message row:

* builds its ``document`` (``role``, ``content``, ``id``, ``timestamp``,
  ``metadata``) with the app's codec, exactly as 0.2 writes new messages;
* renames an id that an earlier message of the same conversation already
  has (0.1 did not enforce uniqueness): the later message becomes
  ``<id>~<position>`` (shortened to fit 255 characters, and never an id the
  conversation already holds), so the unique constraint of 0003 can be added
  without losing a row;
* deletes rows outside their conversation's 0.1 position range, which 0.1 never
  showed (leftovers of a failed replacement).

``next_position`` becomes ``first_position + message_count``, and
``message_count`` the number of rows kept. The step is one-way: back up
before migrating if you may need to return to 0.1.
"""

from __future__ import annotations

from django.db import migrations, models

BATCH = 500


def _unique_id(message_id, position, taken):
    suffix = f"~{position}"
    candidate = message_id[: 255 - len(suffix)] + suffix
    counter = 0
    while candidate in taken:
        counter += 1
        suffix = f"~{position}.{counter}"
        candidate = message_id[: 255 - len(suffix)] + suffix
    return candidate


def convert(apps, schema_editor):
    from django_convstore import codec
    from django_convstore.types import Message

    db = schema_editor.connection.alias
    conversations = apps.get_model("django_convstore", "StoredConversation").objects.using(db)
    messages = apps.get_model("django_convstore", "StoredMessage").objects.using(db)

    pending = []
    stale = []

    def flush(force=False):
        if pending and (force or len(pending) >= BATCH):
            messages.bulk_update(pending, ["document", "message_id"], batch_size=BATCH)
            pending.clear()
        if stale and (force or len(stale) >= BATCH):
            messages.filter(pk__in=stale).delete()
            stale.clear()

    def finish(row, kept):
        conversations.filter(pk=row.pk).update(
            next_position=row.first_position + row.message_count, message_count=len(kept)
        )
        taken = {m.message_id for m in kept}
        seen = set()
        for message in kept:
            if message.message_id in seen:
                message.message_id = _unique_id(message.message_id, message.position, taken)
                taken.add(message.message_id)
            seen.add(message.message_id)
            document = Message(
                role=message.role,
                content=message.content,
                id=message.message_id,
                timestamp=message.timestamp,
                metadata=message.metadata or {},
            )
            message.document = codec.encode_message(document).decode()
            pending.append(message)
            flush()

    for row in conversations.order_by("pk").iterator(chunk_size=BATCH):
        start, end = row.first_position, row.first_position + row.message_count
        kept = []
        for message in messages.filter(conversation_id=row.pk).order_by("position"):
            if start <= message.position < end:
                kept.append(message)
            else:
                stale.append(message.pk)
        finish(row, kept)
    flush(force=True)


def refuse(apps, schema_editor):
    raise RuntimeError(
        "django_convstore 0002 cannot be reversed: 0.2 messages (content parts, tool calls) "
        "do not fit the 0.1 columns. Restore the backup taken before migrating instead."
    )


class Migration(migrations.Migration):
    dependencies = [("django_convstore", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="storedmessage",
            name="document",
            field=models.TextField(default="", verbose_name="document (JSON)"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="storedconversation",
            name="next_position",
            field=models.PositiveBigIntegerField(default=0, verbose_name="next position"),
        ),
        migrations.RunPython(convert, refuse, elidable=False),
    ]
