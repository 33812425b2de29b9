"""WSGI entry point of the weblab demo site (weblab_site.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "weblab_site.settings")

application = get_wsgi_application()
