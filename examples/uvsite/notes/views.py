"""Views of the notes app."""
import os
import sys

import django
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from notes import health as health_probes
from notes.models import Note

PAGE_ROWS = 20


def requested_language(request):
    """The language of ?lang= when the site has it, else the one LocaleMiddleware chose."""
    wanted = request.GET.get("lang", "").strip()
    if wanted:
        try:
            return translation.get_supported_language_variant(wanted)
        except LookupError:
            pass
    return translation.get_language()


@require_safe
def index(request):
    """The greeting in the visitor's language and the newest notes."""
    context = {
        "notes": Note.objects.all()[:PAGE_ROWS],
        "release": settings.WEBLAB_RELEASE,
    }
    return render(request, "notes/index.html", context)


@never_cache
@require_safe
def hello(request):
    """One translated line, as text: German only once locale/de's django.mo is compiled."""
    language = requested_language(request)
    with translation.override(language):
        body = gettext("The lab is open.") + "\n"
    response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Content-Language"] = language
    return response


@never_cache
@require_safe
def about(request):
    """Which settings the process runs with (the override module shows here)."""
    body = {
        "release": settings.WEBLAB_RELEASE,
        "settings_module": settings.SETTINGS_MODULE,
        "email_host": settings.EMAIL_HOST,
        "languages": [code for code, _name in settings.LANGUAGES],
        "django": django.get_version(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "pid": os.getpid(),
    }
    return JsonResponse(body)


@never_cache
@require_safe
def health(request):
    """Report the release and whether the database and the cache answer (200 or 503)."""
    status, body = health_probes.report(settings.WEBLAB_RELEASE, connection, cache)
    return JsonResponse(body, status=status)
