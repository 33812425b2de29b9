"""The Celery app "uvsite": configured from Django's settings (the CELERY_* names).

A worker runs as `celery -A uvsite worker` from the project directory.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uvsite.settings")

app = Celery("uvsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
