"""Models of the experiments app."""
import uuid

from django.db import models


class Experiment(models.Model):
    """One scheduled run of a protocol; its state is here, not in a Celery result backend."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STATUSES = [(QUEUED, "queued"), (RUNNING, "running"), (DONE, "done"), (FAILED, "failed"), (CANCELLED, "cancelled")]
    MAX_DURATION = 600

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.CharField(max_length=64)
    protocol = models.TextField()
    duration = models.FloatField(default=0, help_text="seconds the computation is spread over, 0 to 600")
    status = models.CharField(max_length=16, choices=STATUSES, default=QUEUED, db_index=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker_release = models.CharField(max_length=100, blank=True)
    worker_host = models.CharField(max_length=255, blank=True)
    output_file = models.CharField(max_length=255, blank=True, help_text="relative to TASKQUEUE_DATA_DIR")
    output_sha256 = models.CharField(max_length=64, blank=True)
    completions = models.PositiveIntegerField(default=0, help_text="how many runs completed (1 when exactly once)")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return "%s %s (%s)" % (self.model, self.id, self.status)

    def as_json(self):
        """The experiment as the API returns it."""
        def moment(value):
            return value.isoformat() if value else None

        return {
            "id": str(self.id),
            "model": self.model,
            "protocol": self.protocol,
            "duration": self.duration,
            "status": self.status,
            "created": moment(self.created),
            "started_at": moment(self.started_at),
            "finished_at": moment(self.finished_at),
            "worker_release": self.worker_release,
            "worker_host": self.worker_host,
            "output_file": self.output_file,
            "output_sha256": self.output_sha256,
            "completions": self.completions,
            "error": self.error,
        }
