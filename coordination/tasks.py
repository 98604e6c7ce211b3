"""Celery tasks: async echo processing with retries and exponential backoff."""

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from coordination import services

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
        message = services.process_message(message_pk, final_attempt=final_attempt)
    except services.ProcessingError as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries), max_retries=max_retries) from exc
    except Exception as exc:
        if not final_attempt:
            logger.warning("message %s: attempt failed (%s); retrying", message_pk, exc.__class__.__name__)
            raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries), max_retries=max_retries) from exc
        logger.exception("message %s failed for good", message_pk)
        services.fail_message(message_pk, f"processing error: {exc.__class__.__name__}")
        return "failed"
    return message.status if message is not None else "skipped"
