"""Models of the notes app."""
from django.db import models


class Note(models.Model):
    """One line of text, when it was written and by which release."""

    text = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    release = models.CharField(max_length=100, blank=True, editable=False)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return self.text
