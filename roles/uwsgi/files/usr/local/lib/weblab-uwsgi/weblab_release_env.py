# Copyright: weblab.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Put a release's own settings into the environment: RELEASE/.weblab/app.env, the KEY='value'
lines weblab.stack.app writes into each release (its values hold no newline or single quote).
Read by each uWSGI worker before it imports the app (weblab_uwsgi.py) and by the reload's
pre-flight import (uwsgi_reload.py), so a release runs with the settings it was checked with."""

import os


def load(release):
    """Set the variables of RELEASE's app.env; a missing file sets nothing."""
    path = os.path.join(release, ".weblab", "app.env")
    try:
        handle = open(path, encoding="utf-8")  # pylint: disable=consider-using-with
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key and not key.startswith("#"):
                os.environ[key] = value[1:-1] if len(value) > 1 and value[0] == value[-1] == "'" else value
