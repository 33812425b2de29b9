"""Views of the lab app."""
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from lab import health as health_probes
from lab.forms import ExperimentForm
from lab.models import Experiment

PAGE_ROWS = 50


@require_http_methods(["GET", "HEAD", "POST"])
def index(request):
    """List the newest experiments; POST creates one, then redirects back (no double submit)."""
    if request.method == "POST":
        form = ExperimentForm(request.POST)
        if form.is_valid():
            experiment = form.save(commit=False)
            experiment.release = settings.WEBLAB_RELEASE
            experiment.save()
            return redirect("lab:index")
        status = 400
    else:
        form = ExperimentForm()
        status = 200
    # The summary fragment is cached; its key varies with these, so a new row shows at once.
    stats = Experiment.objects.aggregate(count=Count("id"), latest=Max("id"))
    context = {
        "form": form,
        "experiments": Experiment.objects.all()[:PAGE_ROWS],
        "stats": stats,
        "fragment_seconds": settings.CACHES["default"].get("TIMEOUT", 300),
    }
    return render(request, "lab/index.html", context, status=status)


@never_cache
@require_safe
def health(request):
    """Report the release and whether the database and the cache answer (200 or 503)."""
    status, body = health_probes.report(settings.WEBLAB_RELEASE, connection, cache)
    return JsonResponse(body, status=status)
