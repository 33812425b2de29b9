# Copyright: weblab.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WSGI module uWSGI loads for weblab.stack.uwsgi (`module = weblab_uwsgi:application`): it
loads the app's own WSGI callable (WEBLAB_UWSGI_APP, MODULE:CALLABLE) in each worker (lazy-apps)
from the release RUN_DIR/release points at, with that release's settings (its .weblab/app.env,
when WEBLAB_UWSGI_RELEASE_ENV is 1), and records which release that was.

RUN_DIR/release points at DEPLOY_PATH/current, except while a deploy stages a release: the stage
(uwsgi_reload.py --stage) points it at the new release and starts a chain reload. The first
worker reloaded loads the new release and, since `current` does not point at it yet, reports it
staged and holds inside the load, before uWSGI counts it as accepting: the chain reload waits
for it, and the other workers serve the live release meanwhile. The moment `current` points at
its release the worker serves it, and the chain goes on through the other workers.

A staged release that fails to load, or is not switched to within WEBLAB_UWSGI_HOLD_TIMEOUT
seconds, points RUN_DIR/release back at `current` and ends this worker with exit status 1:
uWSGI respawns it on the live release. Not by raising: a worker that fails to load its app
exits with status 22, on which uWSGI with need-app and lazy-apps stops every worker. Files in RUN_DIR, named by worker PID: worker-PID (the release it loaded),
staged-PID (holding), failed-PID (the release and the error).
"""

import importlib
import os
import sys
import time
import traceback

import weblab_release_env

RUN_DIR = os.environ["WEBLAB_UWSGI_RUN_DIR"]
CURRENT = os.path.join(os.environ["WEBLAB_UWSGI_DEPLOY_PATH"], "current")
LINK = os.path.join(RUN_DIR, "release")


def _write(name, text):
    path = os.path.join(RUN_DIR, "%s-%d" % (name, os.getpid()))
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _point_link_at_current():
    temporary = LINK + ".%d" % os.getpid()
    os.symlink(CURRENT, temporary)
    os.replace(temporary, LINK)


def _load(spec):
    module, _sep, name = spec.partition(":")
    app = getattr(importlib.import_module(module), name or "application")
    if not callable(app):
        raise TypeError("%s is not callable" % spec)
    return app


def _hold(release, timeout):
    deadline = time.monotonic() + timeout
    while os.path.realpath(CURRENT) != release:
        if time.monotonic() > deadline:
            raise RuntimeError("staged release %s was not switched to within %d s" % (release, timeout))
        time.sleep(0.01)


def _start():
    release = os.path.realpath(LINK)
    staged = release != os.path.realpath(CURRENT)
    try:
        if os.environ.get("WEBLAB_UWSGI_RELEASE_ENV") == "1":
            weblab_release_env.load(release)
        app = _load(os.environ["WEBLAB_UWSGI_APP"])
        if staged:
            _write("staged", release + "\n")
            print("weblab_uwsgi: worker %d loaded the staged release %s and holds until %s points at it"
                  % (os.getpid(), release, CURRENT), file=sys.stderr)
            _hold(release, int(os.environ.get("WEBLAB_UWSGI_HOLD_TIMEOUT", "120")))
    except BaseException:  # pylint: disable=broad-exception-caught
        if not staged:
            raise
        error = traceback.format_exc()
        _write("failed", release + "\n" + error)
        _point_link_at_current()
        print("weblab_uwsgi: worker %d cannot serve the staged release %s; it restarts on the live "
              "release:\n%s" % (os.getpid(), release, error), file=sys.stderr, flush=True)
        os._exit(1)
    _write("worker", release + "\n")
    return app


application = _start()
