"""Celery tasks of the notes app (a worker: `celery -A uvsite worker`)."""
from celery import shared_task
from django.conf import settings

from notes.models import Note


@shared_task
def add_note(text):
    """Write a note with the worker's release; return its id."""
    note = Note.objects.create(text=text, release=settings.WEBLAB_RELEASE)
    return note.pk
