"""The Celery app "taskqueue": configured from Django's settings (the CELERY_* names).

A worker runs from the project directory as `celery -A taskqueue worker -Q experiments` (the
queue named by TASKQUEUE_QUEUE), with the same environment as the web processes.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue.settings")

app = Celery("taskqueue")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
