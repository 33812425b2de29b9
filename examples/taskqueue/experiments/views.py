"""Views of the task queue: the JSON API under /api/ and /health/."""
import functools
import hmac
import json
import logging
import math
import re

from django.conf import settings
from django.db import connection, transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from experiments import health as health_probes
from experiments import protocol as protocol_language
from experiments.models import Experiment
from experiments.tasks import run_experiment

LOG = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_BODY = 256 * 1024


def bearer_token_matches(request, expected):
    """True when the request carries `Authorization: Bearer <expected>` (compared in constant time)."""
    scheme, token = request.headers.get("Authorization", "").partition(" ")[::2]
    if scheme.lower() != "bearer" or not token.strip() or not expected:
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), expected.encode("utf-8"))


def api(*methods):
    """An API view: CSRF-exempt, never cached, bearer token required, methods limited, JSON errors."""
    def decorate(view):
        @csrf_exempt
        @never_cache
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not bearer_token_matches(request, settings.TASKQUEUE_API_TOKEN):
                response = JsonResponse({"error": "a valid bearer token is required"}, status=401)
                response["WWW-Authenticate"] = 'Bearer realm="taskqueue"'
                return response
            if request.method not in methods:
                response = JsonResponse({"error": "method %s not allowed" % request.method}, status=405)
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)
        return wrapped
    return decorate


def json_body(request):
    """(object, None) for a JSON object body, (None, error response) otherwise."""
    if len(request.body) > MAX_BODY:
        return None, JsonResponse({"errors": {"body": "larger than %d bytes" % MAX_BODY}}, status=400)
    try:
        data = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, JsonResponse({"errors": {"body": "not valid JSON"}}, status=400)
    if not isinstance(data, dict):
        return None, JsonResponse({"errors": {"body": "must be a JSON object"}}, status=400)
    return data, None


def validate_experiment(data):
    """(cleaned values, field errors, protocol errors) of a new experiment."""
    errors = {}
    protocol_errors = []
    model = data.get("model")
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        errors["model"] = "required: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    protocol = data.get("protocol")
    if not isinstance(protocol, str) or not protocol.strip():
        errors["protocol"] = "required: the protocol's text"
    else:
        parsed = protocol_language.parse(protocol)
        if not parsed.valid:
            errors["protocol"] = "has %d error%s" % (len(parsed.errors), "" if len(parsed.errors) == 1 else "s")
            protocol_errors = parsed.errors
    duration = data.get("duration", 0)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
            or not 0 <= duration <= Experiment.MAX_DURATION:
        errors["duration"] = "must be a number of seconds from 0 to %d" % Experiment.MAX_DURATION
    unknown = sorted(set(data) - {"model", "protocol", "duration"})
    for name in unknown:
        errors[name] = "unknown field"
    return {"model": model, "protocol": protocol, "duration": float(duration) if "duration" not in errors else 0}, errors, protocol_errors


def enqueue(experiment_id):
    """Send the experiment to the queue; the Celery task id is the experiment's id."""
    run_experiment.apply_async((str(experiment_id),), queue=settings.TASKQUEUE_QUEUE, task_id=str(experiment_id))


@api("POST")
def experiments(request):
    """POST: schedule an experiment, 202 {"id", "status": "queued"}; 400 naming the bad fields."""
    data, problem = json_body(request)
    if problem:
        return problem
    values, errors, protocol_errors = validate_experiment(data)
    if errors:
        body = {"errors": errors}
        if protocol_errors:
            body["protocol_errors"] = protocol_errors
        return JsonResponse(body, status=400)
    experiment = None
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(**values)
            # Sent once the row is committed, so a worker never looks for a row it cannot see.
            transaction.on_commit(functools.partial(enqueue, experiment.id))
    except Exception as exc:
        if experiment is None:
            raise
        # The row is committed but the broker did not take the message: say so, not "queued".
        LOG.error("experiment %s: could not be queued: %s", experiment.id, exc)
        Experiment.objects.filter(pk=experiment.id, status=Experiment.QUEUED).update(
            status=Experiment.FAILED, finished_at=timezone.now(), error="could not be queued: %s" % exc)
        return JsonResponse({"id": str(experiment.id), "status": Experiment.FAILED,
                             "error": "the broker did not take the experiment"}, status=503)
    return JsonResponse({"id": str(experiment.id), "status": experiment.status}, status=202)


@api("GET", "HEAD")
def experiment_detail(request, experiment_id):
    """The experiment as JSON; 404 when unknown."""
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        return JsonResponse({"error": "no such experiment"}, status=404)
    return JsonResponse(experiment.as_json())


@api("POST")
def experiment_cancel(request, experiment_id):
    """Cancel a queued or running experiment (200); a finished one is a conflict (409)."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().filter(pk=experiment_id).first()
        if experiment is None:
            return JsonResponse({"error": "no such experiment"}, status=404)
        previous = experiment.status
        if previous in (Experiment.DONE, Experiment.FAILED):
            return JsonResponse({"error": "the experiment is %s" % previous, "status": previous}, status=409)
        if previous != Experiment.CANCELLED:
            experiment.status = Experiment.CANCELLED
            experiment.finished_at = timezone.now()
            experiment.save(update_fields=["status", "finished_at"])
    revoked = False
    if previous in (Experiment.QUEUED, Experiment.RUNNING):
        # The row is the truth (a run stops at its next look at it); revoking only saves the
        # worker the rest of the run: a queued message is dropped, a running child is killed.
        try:
            run_experiment.app.control.revoke(str(experiment.id), terminate=previous == Experiment.RUNNING, signal="SIGTERM")
            revoked = True
        except Exception as exc:
            LOG.warning("experiment %s: cancelled, but the revoke did not reach the workers: %s", experiment.id, exc)
    return JsonResponse({"id": str(experiment.id), "status": Experiment.CANCELLED, "previous": previous, "revoked": revoked})


def parse_protocol(request):
    """(the parsed protocol of the request's JSON body, None), or (None, the 400 answer)."""
    data, problem = json_body(request)
    if problem:
        return None, problem
    if not isinstance(data.get("protocol"), str):
        return None, JsonResponse({"errors": {"protocol": "required: the protocol's text"}}, status=400)
    return protocol_language.parse(data["protocol"]), None


@api("POST")
def protocol_check(request):
    """{"valid": bool, "errors": [{"line", "message"}]} of a protocol."""
    parsed, problem = parse_protocol(request)
    if problem:
        return problem
    return JsonResponse({"valid": parsed.valid, "errors": parsed.errors})


@api("POST")
def protocol_interface(request):
    """The inputs and outputs (and steps) of a valid protocol; 400 with its errors otherwise."""
    parsed, problem = parse_protocol(request)
    if problem:
        return problem
    if not parsed.valid:
        return JsonResponse({"errors": {"protocol": "is not valid"}, "protocol_errors": parsed.errors}, status=400)
    return JsonResponse(parsed.interface())


@never_cache
@require_safe
def health(request):
    """Report the release and whether the database and the broker answer (200 or 503)."""
    status, body = health_probes.report(settings.WEBLAB_RELEASE, connection, settings.CELERY_BROKER_URL)
    return JsonResponse(body, status=status)
