# Copyright: weblab.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""weblab.stack.celery: run a celery command for one app, with the role's settings.

Run by the start script with the release's venv python, in the release directory:

    python weblab_celery.py CONFIG COMMAND [ARGS...]

CONFIG is /etc/weblab/celery/APP.json, written by the role (no secrets): comment lines (#),
then JSON:

    {"app": "uvsite", "env_file": "", "settings": {"task_acks_late": true, ...}, ...}

The app's environment (the release's .weblab/app.env, or "env_file") is read first, then the
app is imported as `celery -A` would (celery.app.utils.find_app), the settings are put onto
app.conf, and Celery's command line runs COMMAND (`worker` through app.worker_main). The settings
win over the app's own configuration (Django's CELERY_* settings included): Celery looks a
setting up in app.conf's first mapping before the app's configuration source, and they go
there. The worker refuses to start when Celery does not see them.
"""

import json
import os
import re
import sys


def read_env_file(path):
    """Return the variables of a systemd EnvironmentFile= (KEY=value lines).

    Blank lines and lines starting with # or ; are skipped; a value may be in single quotes
    (taken as written) or double quotes (backslash escapes \\" \\\\ \\$ \\`). Anything else
    raises ValueError naming the line (the line itself may hold a secret, so it is not shown).
    """
    variables = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            key = key.strip()
            value = value.strip()
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError("%s, line %d: not a KEY=value line" % (path, number))
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            elif len(value) >= 2 and value[0] == value[-1] == '"':
                value = _unescape(value[1:-1], path, number)
            elif value[:1] in ("'", '"'):
                raise ValueError("%s, line %d: unbalanced quotes" % (path, number))
            variables[key] = value
    return variables


def _unescape(value, path, number):
    out = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            char = next(chars, "")
            if char not in ('"', "\\", "$", "`"):
                raise ValueError("%s, line %d: unknown escape in double quotes" % (path, number))
        out.append(char)
    return "".join(out)


def read_config(path):
    """The role's settings file: JSON after its leading comment lines."""
    with open(path, encoding="utf-8") as handle:
        return json.loads("".join(line for line in handle if not line.startswith("#")))


def load_app(config, release):
    """Import the app of CONFIG from RELEASE, with its environment and the role's settings."""
    env_file = config.get("env_file") or os.path.join(release, ".weblab", "app.env")
    os.environ.update(read_env_file(env_file))
    # As `celery -A` from the release directory: the project's modules come from the release.
    sys.path.insert(0, release)
    from celery.app.utils import find_app  # pylint: disable=import-outside-toplevel,import-error

    app = find_app(config["app"])
    for name, value in config["settings"].items():
        app.conf[name] = value
        # An app configured with config_from_object(..., namespace="CELERY") (Django's
        # settings) reads CELERY_TASK_TIME_LIMIT before task_time_limit: set that one too, or
        # the app's own value wins.
        if app.namespace:
            app.conf["%s_%s" % (app.namespace.upper(), name.upper())] = value
    return app


def check_settings(app, settings):
    """Raise RuntimeError when app.conf does not show SETTINGS (another source won)."""
    wrong = {name: app.conf.get(name) for name, value in settings.items() if app.conf.get(name) != value}
    if wrong:
        raise RuntimeError("weblab-celery: the app's configuration overrides the role's settings: %s"
                           % ", ".join("%s=%r" % item for item in sorted(wrong.items())))


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: weblab_celery.py CONFIG COMMAND [ARGS...]\n")
        return 2
    config = read_config(argv[1])
    app = load_app(config, os.getcwd())
    command = argv[2:]
    if command[0] in ("worker", "beat"):
        check_settings(app, config["settings"])
        print("weblab-celery: %s from %s with %s" % (
            config["app"], os.getcwd(),
            " ".join("%s=%s" % (name, app.conf.get(name)) for name in sorted(config["settings"]))),
            flush=True)
    # Celery's command line, as `celery -A MODULE COMMAND ...` (app.worker_main() would drop the
    # worker's exit code).
    return app.start(command) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
