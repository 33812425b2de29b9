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
