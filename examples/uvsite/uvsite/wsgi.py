"""WSGI entry point of uvsite (uvsite.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uvsite.settings")

application = get_wsgi_application()
