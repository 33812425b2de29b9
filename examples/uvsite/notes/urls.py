"""URLs of the notes app."""
from django.urls import path

from notes import views

app_name = "notes"

urlpatterns = [
    path("", views.index, name="index"),
    path("hello/", views.hello, name="hello"),
    path("about/", views.about, name="about"),
    path("health/", views.health, name="health"),
]
