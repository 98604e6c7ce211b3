"""PostgreSQL wakes waiting consumers: a row that becomes receivable (inserted queued, nacked, returned by
the sweep, redriven) sends NOTIFY brikk_inbox '<recipient id>' when its transaction commits (coordination/
wakeup.py listens). A trigger, so the send path makes no extra round trip. Other databases wake in process."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION brikk_inbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('brikk_inbox', NEW.recipient_id::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS brikk_inbox_notify ON coordination_messagelog;
CREATE TRIGGER brikk_inbox_notify
    AFTER INSERT OR UPDATE OF delivery_state, available_at ON coordination_messagelog
    FOR EACH ROW WHEN (NEW.delivery_state = 'queued' AND NEW.recipient_id IS NOT NULL)
    EXECUTE FUNCTION brikk_inbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS brikk_inbox_notify ON coordination_messagelog;
DROP FUNCTION IF EXISTS brikk_inbox_notify();
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("coordination", "0004_delivery_attempts_and_replies")]

    operations = [migrations.RunPython(create, drop)]
