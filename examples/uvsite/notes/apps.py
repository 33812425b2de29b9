"""The notes app: one model, the pages, the health endpoint and a Celery task."""
from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "notes"
    verbose_name = "Notes"
