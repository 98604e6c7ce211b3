"""Background steps of the audit trail, scheduled by celery beat (CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from audit import chain


@shared_task(name="audit.seal", ignore_result=True)
def seal_audit() -> int:
    """Seal new audit rows into the hash chain and append the head to the checkpoint file."""
    sealed = chain.seal()
    if sealed:
        chain.write_checkpoint(chain.head())
    return sealed
