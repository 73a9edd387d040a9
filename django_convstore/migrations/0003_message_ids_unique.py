"""0.2: drop the 0.1 message columns; message ids unique per conversation.

On MySQL/MariaDB the id columns get a binary, no-pad collation first (the
default collations compare case-insensitively and ignore trailing spaces, so
``"A"`` and ``"a "`` would count as the same id), and both tables are
converted to utf8mb4.
"""

from __future__ import annotations

from django.db import migrations, models

#: (table, column, nullable) of the identifier columns that must compare byte for byte.
_ID_COLUMNS = (
    ("django_convstore_storedconversation", "namespace", False),
    ("django_convstore_storedconversation", "conversation_id", False),
    ("django_convstore_storedconversation", "owner", True),
    ("django_convstore_storedmessage", "message_id", False),
)
_COLLATIONS = ("utf8mb4_0900_bin", "utf8mb4_nopad_bin", "utf8mb4_bin")


def binary_ids_on_mysql(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SHOW COLLATION WHERE Charset = 'utf8mb4'")
        available = {row[0] for row in cursor.fetchall()}
        collation = next(name for name in _COLLATIONS if name in available)
        for table in {table for table, _column, _null in _ID_COLUMNS}:
            cursor.execute(f"ALTER TABLE {quote(table)} CONVERT TO CHARACTER SET utf8mb4")
        for table, column, nullable in _ID_COLUMNS:
            cursor.execute(
                f"ALTER TABLE {quote(table)} MODIFY {quote(column)} varchar(255) "
                f"CHARACTER SET utf8mb4 COLLATE {collation} {'NULL' if nullable else 'NOT NULL'}"
            )


class Migration(migrations.Migration):
    dependencies = [("django_convstore", "0002_message_documents")]

    operations = [
        migrations.RemoveField(model_name="storedconversation", name="first_position"),
        migrations.RemoveField(model_name="storedmessage", name="role"),
        migrations.RemoveField(model_name="storedmessage", name="content"),
        migrations.RemoveField(model_name="storedmessage", name="timestamp"),
        migrations.RemoveField(model_name="storedmessage", name="metadata"),
        migrations.RunPython(binary_ids_on_mysql, migrations.RunPython.noop, elidable=False),
        migrations.AddConstraint(
            model_name="storedmessage",
            constraint=models.UniqueConstraint(
                fields=("conversation", "message_id"), name="convstore_msg_conv_id_uniq"
            ),
        ),
    ]
