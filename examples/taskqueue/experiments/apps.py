"""The experiments app: the REST API, the protocol language and the Celery task."""
from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "Experiments"
