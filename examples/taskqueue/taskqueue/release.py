"""Find the name of the release the code runs from."""
import os
from pathlib import Path


def detect_release(project_dir, environ=None):
    """Return the release name for code living in project_dir.

    WEBLAB_RELEASE in the environment wins when it is set and not blank. Otherwise the path
    is resolved (so /srv/APP/current/... becomes /srv/APP/releases/NAME/...) and the first
    directory, from project_dir upwards, whose parent is called "releases" names the release.
    Outside a releases/ layout (a checkout, a test run) it is project_dir's own name.
    """
    if environ is None:
        environ = os.environ
    name = environ.get("WEBLAB_RELEASE", "").strip()
    if name:
        return name
    path = Path(project_dir).resolve()
    for candidate in (path,) + tuple(path.parents):
        if candidate.parent.name == "releases" and candidate.name:
            return candidate.name
    return path.name
