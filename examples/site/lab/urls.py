"""URLs of the lab app."""
from django.urls import path

from lab import views

app_name = "lab"

urlpatterns = [
    path("", views.index, name="index"),
    path("health/", views.health, name="health"),
]
