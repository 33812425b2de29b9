"""Models of the lab app."""
from django.db import models


class Experiment(models.Model):
    """One row written through the page: a name, when and by which release."""

    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    release = models.CharField(max_length=100, blank=True, editable=False)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return self.name


class Result(models.Model):
    """The result of a task-queue experiment, as a worker posted it (one row per experiment)."""

    experiment = models.UUIDField(unique=True)
    status = models.CharField(max_length=16)
    release = models.CharField(max_length=100, blank=True, help_text="the worker's release")
    output_sha256 = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    received = models.DateTimeField(auto_now=True, db_index=True, help_text="the latest delivery")
    deliveries = models.PositiveIntegerField(default=1, help_text="how many times it was posted")

    class Meta:
        ordering = ["-received", "-id"]

    def __str__(self):
        return "%s %s" % (self.experiment, self.status)

    def as_json(self):
        """The result as /results/<uuid>/ shows it (nothing secret in it)."""
        return {
            "experiment": str(self.experiment),
            "status": self.status,
            "release": self.release,
            "output_sha256": self.output_sha256,
            "summary": self.summary,
            "received": self.received.isoformat(),
            "deliveries": self.deliveries,
        }
