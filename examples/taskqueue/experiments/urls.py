"""URLs of the experiments app."""
from django.urls import path

from experiments import views

app_name = "experiments"

urlpatterns = [
    path("api/experiments/", views.experiments, name="experiments"),
    path("api/experiments/<uuid:experiment_id>/", views.experiment_detail, name="experiment"),
    path("api/experiments/<uuid:experiment_id>/cancel/", views.experiment_cancel, name="cancel"),
    path("api/protocols/check/", views.protocol_check, name="protocol-check"),
    path("api/protocols/interface/", views.protocol_interface, name="protocol-interface"),
    path("health/", views.health, name="health"),
]
