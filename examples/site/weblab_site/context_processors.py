"""Template context shared by every page."""
from django.conf import settings


def release(request):
    """Expose the release name to templates."""
    return {"weblab_release": settings.WEBLAB_RELEASE}
