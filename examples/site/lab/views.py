"""Views of the lab app."""
import hmac
import json
import re
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import F
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from lab import health as health_probes
from lab.forms import ExperimentForm
from lab.models import Experiment, Result

PAGE_ROWS = 50
RESULT_ROWS = 20
RESULT_STATUSES = ("done", "failed", "cancelled")
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
MAX_RESULT_BODY = 64 * 1024


def page_stats():
    """What the page's two cached fragments vary with, in one query: the experiments' count and
    newest id, the results' count and latest delivery. On a cache hit nothing else runs."""
    quote = connection.ops.quote_name
    experiments, results = quote(Experiment._meta.db_table), quote(Result._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM %s), (SELECT MAX(%s) FROM %s), (SELECT COUNT(*) FROM %s), (SELECT MAX(%s) FROM %s)"
            % (experiments, quote("id"), experiments, results, quote("received"), results))
        count, latest, results_count, results_latest = cursor.fetchone()
    return {"count": count, "latest": latest, "results": results_count, "results_latest": str(results_latest)}


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
    # The fragments are cached; their keys vary with these, so a new row shows at once.
    context = {
        "form": form,
        "experiments": Experiment.objects.all()[:PAGE_ROWS],
        "results": Result.objects.all()[:RESULT_ROWS],
        "stats": page_stats(),
        "fragment_seconds": settings.CACHES["default"].get("TIMEOUT", 300),
    }
    return render(request, "lab/index.html", context, status=status)


@never_cache
@require_safe
def health(request):
    """Report the release and whether the database and the cache answer (200 or 503)."""
    status, body = health_probes.report(settings.WEBLAB_RELEASE, connection, cache)
    return JsonResponse(body, status=status)


def bearer_token_matches(request, expected):
    """True when the request carries `Authorization: Bearer <expected>` (compared in constant time)."""
    scheme, token = request.headers.get("Authorization", "").partition(" ")[::2]
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), expected.encode("utf-8"))


def result_fields(data):
    """(values, errors) of a posted result."""
    errors = {}
    try:
        experiment = uuid.UUID(data.get("experiment")) if isinstance(data.get("experiment"), str) else None
    except ValueError:
        experiment = None
    if experiment is None:
        errors["experiment"] = "required: the experiment's UUID"
    status = data.get("status")
    if status not in RESULT_STATUSES:
        errors["status"] = "must be one of %s" % ", ".join(RESULT_STATUSES)
    release = data.get("release", "")
    if not isinstance(release, str) or len(release) > 100:
        errors["release"] = "must be a string of at most 100 characters"
    digest = data.get("output_sha256", "")
    if not isinstance(digest, str) or (digest and not SHA256.match(digest)):
        errors["output_sha256"] = "must be 64 lowercase hex digits or empty"
    summary = data.get("summary", {})
    if not isinstance(summary, dict):
        errors["summary"] = "must be a JSON object"
    values = {"status": status, "release": release, "output_sha256": digest, "summary": summary}
    return experiment, values, errors


@csrf_exempt
@never_cache
def results_api(request):
    """POST a task-queue result (bearer DJANGO_RESULTS_TOKEN): 201 when new, 200 on a repeat
    delivery (the row is updated and its deliveries counted). 404 while no token is set."""
    if not settings.RESULTS_TOKEN:
        return JsonResponse({"error": "not found"}, status=404)
    if not bearer_token_matches(request, settings.RESULTS_TOKEN):
        response = JsonResponse({"error": "a valid bearer token is required"}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="results"'
        return response
    if request.method != "POST":
        response = JsonResponse({"error": "method %s not allowed" % request.method}, status=405)
        response["Allow"] = "POST"
        return response
    if len(request.body) > MAX_RESULT_BODY:
        return JsonResponse({"errors": {"body": "larger than %d bytes" % MAX_RESULT_BODY}}, status=400)
    try:
        data = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return JsonResponse({"errors": {"body": "not valid JSON"}}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"errors": {"body": "must be a JSON object"}}, status=400)
    experiment, values, errors = result_fields(data)
    if errors:
        return JsonResponse({"errors": errors}, status=400)
    result, created = Result.objects.update_or_create(
        experiment=experiment,
        defaults=dict(values, deliveries=F("deliveries") + 1),
        create_defaults=dict(values, deliveries=1),
    )
    result.refresh_from_db(fields=["deliveries", "received"])
    return JsonResponse({"experiment": str(result.experiment), "deliveries": result.deliveries, "created": created},
                        status=201 if created else 200)


@never_cache
@require_safe
def result_detail(request, experiment):
    """A result as JSON (public: nothing secret in it); 404 when none arrived."""
    result = Result.objects.filter(experiment=experiment).first()
    if result is None:
        return JsonResponse({"error": "no result for this experiment"}, status=404)
    return JsonResponse(result.as_json())
