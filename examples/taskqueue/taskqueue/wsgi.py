"""WSGI entry point of the weblab task queue (taskqueue.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue.settings")

application = get_wsgi_application()
