"""The lab app: experiments, the page that lists them and the health endpoint."""
from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "lab"
    verbose_name = "Web lab"
