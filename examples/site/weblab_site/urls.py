"""URLs of the weblab demo site."""
from django.urls import include, path

urlpatterns = [
    path("", include("lab.urls")),
]
