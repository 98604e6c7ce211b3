"""Audit actions are a registry: record() refuses an unknown one (the admin filter lists them: test_admin.py)."""

import pytest

from audit.actions import AuditAction, UnknownAuditAction
from audit.models import AuditLog
from audit.services import record

pytestmark = pytest.mark.django_db


def test_record_refuses_an_unregistered_action_and_writes_nothing():
    with pytest.raises(UnknownAuditAction, match="agent.renamed"):
        record("agent.renamed")
    assert not AuditLog.objects.exists()


def test_record_takes_registered_names_as_strings_or_members():
    record("agent.updated")
    record(AuditAction.AGENT_UPDATED)
    assert list(AuditLog.objects.values_list("action", flat=True)) == ["agent.updated", "agent.updated"]
