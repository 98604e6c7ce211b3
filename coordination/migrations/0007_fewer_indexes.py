"""Fewer indexes per message row: the single-column indexes of the three foreign keys (composite indexes begin with
them) and the LIKE index of correlation_id (looked up exactly only) are dropped.

The foreign keys' indexes are dropped by name, their constraints left as they are: AlterField would drop and re-add
each constraint, and re-adding one checks every row of the table while writes wait."""

import django.db.models.deletion
from django.db import migrations, models

# The names 0001_initial gave them (Django's names for a field's index, the same on every database).
FOREIGN_KEY_INDEXES = {
    "organization_id": "coordination_messagelog_organization_id_9a6adc04",
    "recipient_id": "coordination_messagelog_recipient_id_f55b0128",
    "sender_id": "coordination_messagelog_sender_id_89117897",
}


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0004_organization_max_deliveries"),
        ("coordination", "0006_push_endpoints"),
    ]

    operations = [
        migrations.AlterField(
            model_name="messagelog",
            name="correlation_id",
            field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AddIndex(
            model_name="messagelog",
            index=models.Index(fields=["correlation_id"], name="msg_correlation"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="messagelog",
                    name="organization",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="messages",
                        to="agents.organization",
                    ),
                ),
                migrations.AlterField(
                    model_name="messagelog",
                    name="recipient",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="received_messages",
                        to="agents.agent",
                    ),
                ),
                migrations.AlterField(
                    model_name="messagelog",
                    name="sender",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="sent_messages",
                        to="agents.agent",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX "{name}" ON "coordination_messagelog" ("{column}")',
                )
                for column, name in FOREIGN_KEY_INDEXES.items()
            ],
        ),
    ]
