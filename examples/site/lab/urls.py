"""URLs of the lab app."""
from django.urls import path

from lab import views

app_name = "lab"

urlpatterns = [
    path("", views.index, name="index"),
    path("health/", views.health, name="health"),
    path("api/results/", views.results_api, name="results-api"),
    path("results/<uuid:experiment>/", views.result_detail, name="result"),
]
