"""The Celery task that runs an experiment (a worker: `celery -A taskqueue worker -Q experiments`).

Safe under late acknowledgement and redelivery: the row in the database is the state, every
change of status is one conditional UPDATE, and a run that finds its experiment cancelled,
done or failed does nothing. `completions` grows only in the UPDATE that moves the row from
running to done, so it counts completed runs exactly.
"""
import csv
import hashlib
import io
import json
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from experiments import protocol as protocol_language
from experiments.models import Experiment

LOG = logging.getLogger(__name__)

# The result callback is retried this many times (backoff 2, 4, 8 ... s, at most 60 s apart);
# when it still fails, the experiment is marked failed and says why.
CALLBACK_RETRIES = 5
# Seconds between two looks at the row while a run sleeps (is it still running?).
CANCEL_CHECK_SECONDS = 0.25


class CallbackFailed(Exception):
    """The site did not take the result; the task is retried."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET: fail instead, naming where it pointed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, "redirected to %s" % newurl, headers, fp)


def output_relative_path(experiment_id):
    """Where an experiment's output goes, relative to TASKQUEUE_DATA_DIR."""
    return Path("experiments") / str(experiment_id) / "output.csv"


@shared_task(
    bind=True,
    name="experiments.tasks.run_experiment",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(CallbackFailed,),
    max_retries=CALLBACK_RETRIES,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
)
def run_experiment(self, experiment_id):
    """Run one experiment; returns what happened ("done", "failed", "cancelled", "skipped: ...")."""
    started = Experiment.objects.filter(pk=experiment_id, status__in=[Experiment.QUEUED, Experiment.RUNNING]).update(
        status=Experiment.RUNNING,
        started_at=timezone.now(),
        worker_release=settings.WEBLAB_RELEASE,
        worker_host=socket.gethostname()[:255],
    )
    if not started:
        status = Experiment.objects.filter(pk=experiment_id).values_list("status", flat=True).first()
        LOG.info("experiment %s: %s, not run", experiment_id, status or "unknown")
        return "skipped: %s" % (status or "unknown")
    experiment = Experiment.objects.get(pk=experiment_id)
    relative = output_relative_path(experiment.id)
    target = Path(settings.TASKQUEUE_DATA_DIR) / relative

    content = previous_output(experiment, target)
    if content is None:
        try:
            content = compute(experiment)
        except (protocol_language.EvaluationError, SoftTimeLimitExceeded) as exc:
            return fail(experiment.id, str(exc) or "the soft time limit was exceeded")
        if content is None:
            LOG.info("experiment %s: cancelled while running", experiment.id)
            return "cancelled"
        try:
            write_atomically(target, content)
        except OSError as exc:
            return fail(experiment.id, "cannot write %s: %s" % (target, exc))
        digest = hashlib.sha256(content).hexdigest()
        recorded = Experiment.objects.filter(pk=experiment.id, status=Experiment.RUNNING).update(
            output_file=str(relative), output_sha256=digest)
        if not recorded:
            return "cancelled"
    digest = hashlib.sha256(content).hexdigest()

    if settings.TASKQUEUE_SITE_RESULTS_URL:
        if still_running(experiment.id) is False:
            return "cancelled"
        try:
            post_result(experiment, digest, summarize(experiment, content))
        except CallbackFailed as exc:
            if self.request.retries >= self.max_retries:
                return fail(experiment.id, "the result callback failed %d times, last: %s" % (self.request.retries + 1, exc))
            LOG.warning("experiment %s: result callback failed (attempt %d), retrying: %s",
                        experiment.id, self.request.retries + 1, exc)
            raise

    finished = Experiment.objects.filter(pk=experiment.id, status=Experiment.RUNNING).update(
        status=Experiment.DONE, finished_at=timezone.now(), completions=F("completions") + 1, error="")
    LOG.info("experiment %s: %s", experiment.id, "done" if finished else "no longer running, left as it is")
    return "done" if finished else "cancelled"


def previous_output(experiment, target):
    """The output an earlier attempt wrote and recorded (its callback then failed), or None."""
    if not experiment.output_sha256:
        return None
    try:
        content = target.read_bytes()
    except OSError:
        return None
    return content if hashlib.sha256(content).hexdigest() == experiment.output_sha256 else None


def still_running(experiment_id):
    """False once the row left 'running' (cancelled, or finished by another delivery)."""
    return Experiment.objects.filter(pk=experiment_id, status=Experiment.RUNNING).exists()


def compute(experiment):
    """The output CSV as bytes, with `duration` seconds spread over the steps; None if cancelled."""
    parsed = protocol_language.parse(experiment.protocol)
    if not parsed.valid:
        raise protocol_language.EvaluationError(
            "; ".join("line %d: %s" % (error["line"], error["message"]) for error in parsed.errors))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["t"] + [output.name for output in parsed.outputs])
    begin = last_check = time.monotonic()
    for step, (t, values) in enumerate(parsed.rows(), start=1):
        writer.writerow([repr(t)] + [repr(values[output.name]) for output in parsed.outputs])
        # Step N ends duration * N / steps after the start, however long the arithmetic took.
        pause = begin + experiment.duration * step / parsed.steps - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() - last_check >= CANCEL_CHECK_SECONDS or step == parsed.steps:
            last_check = time.monotonic()
            if not still_running(experiment.id):
                return None
    return buffer.getvalue().encode("utf-8")


def write_atomically(target, content):
    """Write content to target through a temporary file in the same directory (mode 0640)."""
    target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".output.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o640)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def summarize(experiment, content):
    """Per output: first, last, min and max over the steps, read back from the CSV."""
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    header, body = rows[0], rows[1:]
    outputs = {}
    for column, name in enumerate(header[1:], start=1):
        values = [float(row[column]) for row in body]
        outputs[name] = {"first": values[0], "last": values[-1], "min": min(values), "max": max(values)}
    return {"model": experiment.model, "steps": len(body), "outputs": outputs}


def post_result(experiment, digest, summary):
    """POST the result to TASKQUEUE_SITE_RESULTS_URL; raises CallbackFailed unless it answers 2xx."""
    url = settings.TASKQUEUE_SITE_RESULTS_URL
    body = json.dumps({
        "experiment": str(experiment.id),
        "status": Experiment.DONE,
        "release": settings.WEBLAB_RELEASE,
        "worker_host": socket.gethostname(),
        "output_sha256": digest,
        "summary": summary,
    }).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": "Bearer %s" % settings.TASKQUEUE_SITE_TOKEN,
        "User-Agent": "weblab-taskqueue/%s" % settings.WEBLAB_RELEASE,
    })
    # The default HTTPS handler verifies against the system's CA store (which the common role
    # extends); only redirects are refused.
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=settings.TASKQUEUE_SITE_TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise CallbackFailed("%s answered %s %s" % (url, exc.code, exc.reason)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CallbackFailed("%s: %s" % (url, getattr(exc, "reason", exc))) from None


def fail(experiment_id, message):
    """Mark a running experiment failed with the reason."""
    LOG.warning("experiment %s failed: %s", experiment_id, message)
    Experiment.objects.filter(pk=experiment_id, status=Experiment.RUNNING).update(
        status=Experiment.FAILED, finished_at=timezone.now(), error=message[:10000])
    return "failed"
