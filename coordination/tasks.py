"""Celery tasks: the async echo's enqueueing and its retries with exponential backoff. The work of an
attempt is coordination.processing."""

import logging
from datetime import timedelta

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.utils import timezone

from coordination import inbox, processing
from coordination.models import MessageLog

logger = logging.getLogger("brikk.coordination")


def backoff_seconds(retries: int) -> int:
    """BRIKK_ASYNC_RETRY_BASE_SECONDS * 2**retries, capped at ten minutes."""
    return get_exponential_backoff_interval(
        factor=settings.BRIKK_ASYNC_RETRY_BASE_SECONDS, retries=retries, maximum=600, full_jitter=False
    )


@shared_task(bind=True, name="coordination.process_message", acks_late=True, max_retries=None)
def process_message(self, message_pk: str):
    """accepted → processing → delivered, or back to accepted and retried, or failed with the reason."""
    max_retries = settings.BRIKK_ASYNC_MAX_RETRIES
    final_attempt = self.request.retries >= max_retries
    try:
        message = processing.attempt(message_pk, final_attempt=final_attempt)
    except processing.ProcessingError as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries), max_retries=max_retries) from exc
    except Exception as exc:
        if not final_attempt:
            logger.warning("message %s: attempt failed (%s); retrying", message_pk, exc.__class__.__name__)
            raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries), max_retries=max_retries) from exc
        logger.exception("message %s failed for good", message_pk)
        processing.fail_message(message_pk, f"processing error: {exc.__class__.__name__}")
        return "failed"
    return message.status if message is not None else "skipped"


def enqueue(message_pk) -> None:
    """Hand an accepted message to Celery. If the broker is down the row stays ``accepted`` and
    ``manage.py requeue_messages`` sends it again: it is never lost."""
    try:
        process_message.apply_async(args=[str(message_pk)], queue=settings.BRIKK_ASYNC_QUEUE)
    except Exception:  # the broker's client raises many kinds; any of them leaves the row for requeue
        logger.exception("could not enqueue message %s; it stays accepted for requeue_messages", message_pk)


def requeue_stale(older_than_seconds: int = 300) -> int:
    """Enqueue again messages left ``accepted`` (broker outage at enqueue, lost worker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = list(
        MessageLog.objects.filter(status=MessageLog.Status.ACCEPTED, updated_at__lte=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in stale:
        enqueue(pk)
    return len(stale)


@shared_task(name="coordination.sweep_inbox", ignore_result=True)
def sweep_inbox() -> dict:
    """Dead-letter expired messages and those out of deliveries; return lapsed leases to queued (celery beat)."""
    result = inbox.sweep()
    return {"expired": result.expired, "max_deliveries": result.max_deliveries, "leases": result.leases_returned}
