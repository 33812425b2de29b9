# Copyright: (c) weblab.stack maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server hooks of weblab.stack.gunicorn: a reload that loads the live release and drops nothing.

Installed by the role beside the scripts start and reload (/usr/local/libexec/weblab-gunicorn);
each app's configuration file (/etc/weblab/gunicorn/APP.conf.py) imports it, calls configure()
and hands its hooks to gunicorn. How a reload goes (ExecReload= runs the reload script):

1. reload sends USR2 to the master systemd knows (MAINPID). gunicorn forks; pre_exec() writes
   the child's PID to RUN_DIR/reexec.pid and moves the listening sockets to file descriptors
   3, ... where LISTEN_FDS says they are; the child re-executes the start script (on_starting()
   made it the command to re-execute), which resolves `current` again, so the new master runs
   the new release with its own venv and reads the configuration and the env file afresh.
2. Each worker of the new master runs post_worker_init() once it has loaded the app: it sends
   the app a warm-up request (a 500 or an exception fails the worker's boot), then counts
   itself ready. The
   last one tells systemd MAINPID=<new master> first, then sends TERM to the old master, which
   lets its workers finish their requests and exits. The listening socket never closes.
3. A new master that cannot load the app exits (gunicorn halts when a worker fails to boot), or
   is stopped by the reload script after its timeout: the old master was never told to stop.

A deploy stages the new release before it switches `current` (the stage script, run by the app
role as app_stage_command): the same USR2, but the start script starts the staged release and
the new workers, once loaded and warmed up, report the master staged (RUN_DIR/staged-PID) and
hold, keeping their heartbeat, until `current` points at their release. Then they serve at
once and take over as above: the new release answers within milliseconds of the switch. A
release that is not switched to within the hold timeout fails the workers' boot and the new
master exits; the old one serves on.

The same barrier reports READY=1 on a first start once every worker is ready (the start script
hides NOTIFY_SOCKET from gunicorn, which would report it before any worker booted), so
`systemctl start` fails when the app does.

on_starting() and pre_exec() work around two faults of gunicorn 27's re-exec under systemd
(gunicorn#3281, gunicorn PR #3285) through gunicorn's Arbiter attributes START_CTX, LISTENERS
and systemd: check them before changing the pinned gunicorn version.
"""

import fcntl
import io
import os
import re
import signal
import socket
import sys
import time

# The first file descriptor of the sockets systemd passes (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3

_SETTINGS = {}


def configure(start_command, run_dir, warmup_path="", warmup_host="localhost", deploy_path="",
              hold_timeout=60):
    """Remember the command that starts a master (argv), the service's runtime directory, the
    request each new worker sends its app before it counts as ready ("" for none), the deploy
    path whose `current` a staged master waits for, and how long it waits (seconds)."""
    _SETTINGS["start_command"] = list(start_command)
    _SETTINGS["run_dir"] = run_dir
    _SETTINGS["warmup_path"] = warmup_path
    _SETTINGS["warmup_host"] = warmup_host
    _SETTINGS["deploy_path"] = deploy_path
    _SETTINGS["hold_timeout"] = hold_timeout


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


def load_environment(path):
    """Put the app's environment (read_env_file) into this process's environment.

    Called by the configuration file, so every master reads the file when it starts: a reload
    picks up changed settings. gunicorn keeps the environment it was started with for the next
    re-exec, so a variable removed from the file is gone from the next master as well.
    """
    os.environ.update(read_env_file(path))


def refuse_unknown_settings(names):
    """Fail the start on a setting gunicorn does not know (gunicorn would ignore it silently)."""
    from gunicorn.config import KNOWN_SETTINGS  # pylint: disable=import-outside-toplevel,import-error
    known = {setting.name for setting in KNOWN_SETTINGS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError("gunicorn_extra_settings: gunicorn %s knows no setting named %s"
                         % (_gunicorn_version(), ", ".join(unknown)))


def _gunicorn_version():
    import gunicorn  # pylint: disable=import-outside-toplevel,import-error
    return gunicorn.__version__


def on_starting(server):
    """Master hook: a USR2 re-executes the start script, not this interpreter.

    gunicorn would run sys.executable (this release's venv, resolved at start) with sys.argv,
    which for `python -m gunicorn` names gunicorn/__main__.py: that puts gunicorn's package
    directory first on sys.path, where its `http` package hides the standard library's
    (gunicorn#3281), and keeps the old venv. The start script resolves `current` anew.
    """
    command = _SETTINGS["start_command"]
    server.START_CTX[0] = command[0]
    server.START_CTX["args"] = list(command)
    # The directory the re-exec starts in; the start script changes to the release.
    server.START_CTX["cwd"] = "/"


def pre_exec(server):
    """Forked child of the old master, just before it becomes the new one.

    Says which PID the new master has (RUN_DIR/reexec.pid, for the reload script), and puts the
    sockets systemd passed where the new master looks for them. gunicorn re-executes with
    LISTEN_FDS=<number of sockets>, which means file descriptors 3, 4, ..., but keeps its
    listening sockets on the descriptors it duplicated them to at start (not 3): the new master
    would fail with EBADF, or take another descriptor for the socket (gunicorn PR #3285).
    """
    _mark(os.path.join(_SETTINGS["run_dir"], "reexec.pid"), "%d" % os.getpid())

    if not server.systemd:
        return
    sockets = [listener.fileno() for listener in server.LISTENERS]
    targets = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + len(sockets))
    # Copies first (closed by the exec), so that no socket is overwritten before it is moved.
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START + len(sockets)) for fd in sockets]
    for fd in sockets:
        if fd not in targets:
            os.set_inheritable(fd, False)
    for copy, target in zip(copies, targets):
        os.dup2(copy, target, inheritable=True)


def post_worker_init(worker):
    """Worker hook, run once the worker has loaded the app: the readiness barrier.

    When every worker of this master is ready (once per master), report READY=1 and, when this
    master was started by a reload and the old master is still its parent, MAINPID= first and
    then TERM to the old master.
    """
    master = worker.ppid
    run_dir = _SETTINGS["run_dir"]
    done = os.path.join(run_dir, "done-%d" % master)
    if os.path.isdir(done):
        # This master reported already: a worker replaced later (max_requests, a timeout) has
        # no warm-up, whose failure would stop the whole master (gunicorn halts on a worker that
        # fails to boot).
        return
    if _SETTINGS["warmup_path"]:
        _warm_up(worker)
    ready = os.path.join(run_dir, "ready-%d" % master)
    os.makedirs(ready, exist_ok=True)
    with open(os.path.join(ready, str(os.getpid())), "w", encoding="utf-8"):
        pass
    staged = os.environ.get("WEBLAB_STAGED_RELEASE", "")
    if staged:
        if len(os.listdir(ready)) >= worker.cfg.workers:
            _mark(os.path.join(run_dir, "staged-%d" % master), staged)
        _hold(worker, staged)
    if len(os.listdir(ready)) < worker.cfg.workers:
        return
    try:
        # Whoever makes this directory reports, once: the last worker, or the reload script
        # that gave up waiting (it then stops this master instead).
        os.mkdir(done)
    except FileExistsError:
        return
    old = _old_master(master)
    status = "STATUS=gunicorn master %d serving %s with %d workers" % (
        master, os.getcwd(), worker.cfg.workers)
    if old:
        # systemd must know the new main process before the old one exits, or it would take
        # the service for dead and stop it (NotifyAccess=all lets a worker say so).
        _notify("MAINPID=%d\nREADY=1\n%s" % (master, status))
        worker.log.info("Ready: master %d takes over from master %d, which now stops", master, old)
        os.kill(old, signal.SIGTERM)
    else:
        _notify("READY=1\n%s" % status)
        worker.log.info("Ready: all %d workers of master %d loaded the app", worker.cfg.workers, master)


def _mark(path, text):
    """Write TEXT and a newline to PATH atomically (the reload script reads these files)."""
    temporary = "%s.%d" % (path, os.getpid())
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(temporary, path)


def _hold(worker, release):
    """A staged worker: wait, alive to the master (heartbeat), until `current` points at RELEASE;
    raise when it does not within the hold timeout (the worker fails to boot, the new master
    exits, the old one serves on)."""
    current = os.path.join(_SETTINGS["deploy_path"], "current")
    deadline = time.monotonic() + _SETTINGS["hold_timeout"]
    worker.log.info("Staged: holding until %s points at %s", current, release)
    while os.path.realpath(current) != release:
        if time.monotonic() > deadline:
            raise RuntimeError("staged release %s was not switched to within %s s; this master exits and "
                               "the live one serves on" % (release, _SETTINGS["hold_timeout"]))
        worker.notify()
        time.sleep(0.01)


def _warm_up(worker):
    """Send the app one request in this worker; raise when it fails with 500 or an exception.

    Loading the WSGI application does not import everything a request needs: Django imports
    the URLconf and the views on the first request, so a release with a broken view would load
    and then answer 500 to every request. Raising here fails the worker's boot, which stops a
    new master before it takes over (and fails a first start). Any other answer passes: a 503
    from a health view whose database is down still shows that the code runs, and whether the
    release is healthy is the deploy's health check to decide.
    """
    path = _SETTINGS["warmup_path"]
    host = _SETTINGS["warmup_host"]
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "HTTP_X_FORWARDED_PROTO": "https",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    answer = {}

    def start_response(status, headers, exc_info=None):  # pylint: disable=unused-argument
        answer["status"] = status
        return lambda data: None

    body = worker.wsgi(environ, start_response)
    try:
        for _chunk in body:
            pass
    finally:
        if hasattr(body, "close"):
            body.close()
    status = answer.get("status", "no answer")
    if not status[:3].isdigit() or int(status[:3]) == 500:
        raise RuntimeError("warm-up request GET %s (Host: %s) answered %s: this release does not serve "
                           "(see the errors above)" % (path, host, status))
    worker.log.info("Warm-up request GET %s answered %s", path, status)


def _old_master(master):
    """The PID of the master this one was re-executed from, while it is still its parent."""
    old = os.environ.get("GUNICORN_PID", "")
    if not old.isdigit():
        return 0
    if _parent_of(master) != int(old):
        return 0
    return int(old)


def _parent_of(pid):
    with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
        stat = handle.read()
    # pid (comm) state ppid ...; comm may hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _notify(state):
    """sd_notify() that raises: a handover must not go on when systemd was not told."""
    address = os.environ.get("WEBLAB_NOTIFY_SOCKET", "")
    if not address:
        raise RuntimeError("WEBLAB_NOTIFY_SOCKET is not set: not started by the role's start script under systemd")
    if address[0] == "@":
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
