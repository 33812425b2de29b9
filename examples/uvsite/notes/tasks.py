"""Celery tasks of the notes app (a worker: `celery -A uvsite worker`)."""
import time

from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings

from notes.models import Note

logger = get_task_logger(__name__)


@shared_task
def add_note(text):
    """Write a note with the worker's release; return its id."""
    note = Note.objects.create(text=text, release=settings.WEBLAB_RELEASE)
    return note.pk


@shared_task
def sleep_then_note(seconds, text):
    """Sleep SECONDS (a long task), then write a note like add_note; return its id.

    It logs when it starts, so a test can stop or kill the worker while it runs.
    """
    logger.info("sleep_then_note %s: sleeping %s s", text, seconds)
    time.sleep(seconds)
    note = Note.objects.create(text=text, release=settings.WEBLAB_RELEASE)
    return note.pk
