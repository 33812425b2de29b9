#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: socket_probe
short_description: Request a path from an app server through its unix socket and check the answer
version_added: 0.1.0
description:
  - Sends one C(GET) request for O(path) to the app server listening on the unix socket
    O(socket) (gunicorn over HTTP, or uWSGI over its binary C(uwsgi) protocol), as nginx would
    send it (Host, X-Forwarded-For, X-Forwarded-Proto), and checks the answer. It is how a
    deploy proves that the release it just switched to serves, without going through nginx.
  - An answer passes when its status is one of O(status) and its body contains O(contains).
    Until one passes, the module tries again every O(interval) seconds, for up to O(timeout)
    seconds, so it waits for an app server that is still starting or still loading the new
    code; it then fails with the last answer (status and the start of its body) or the last
    connection error.
  - Every attempt is a new connection and ends after O(request_timeout) seconds, and never
    later than O(timeout) seconds after the first one started.
  - The module only reads, so it never reports a change, and it runs the same in check mode.
author:
  - weblab.stack maintainers (@weblab)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Sends the request in check mode too (it changes nothing) and returns the same data.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  socket:
    description:
      - The absolute path of the app server's unix socket, for example
        C(/run/gunicorn/weblab.sock). A unix socket address holds at most 107 bytes.
      - The user the task runs as needs write permission on the socket.
    type: path
    required: true
  protocol:
    description:
      - What the app server speaks on O(socket).
      - V(http) sends an HTTP/1.0 request that asks the server to close the connection after
        the answer, as nginx's C(proxy_pass) does (gunicorn).
      - V(uwsgi) sends a C(uwsgi) protocol packet (modifier1 V(0), the variables, modifier2
        V(0)) holding the variables nginx's C(uwsgi_params) and the O(host) and
        O(forwarded_proto) headers give, as C(uwsgi_pass) does (uWSGI). The answer is a plain
        HTTP response.
    type: str
    choices: [http, uwsgi]
    default: http
  path:
    description:
      - The path to request, beginning with C(/), with an optional query string
        (C(/health/?full=1)). Written as it would appear in a URL (percent-encoded).
    type: str
    default: /health/
  host:
    description:
      - The Host header (C(HTTP_HOST)), for example C(www.example.com) or C(www.example.com:8443).
        Django answers C(400) to a host that is not in its C(ALLOWED_HOSTS).
    type: str
    required: true
  forwarded_proto:
    description:
      - The X-Forwarded-Proto header, as nginx sends it for a site served over that scheme.
        With V(https) and O(protocol=uwsgi), the variables C(HTTPS=on) and C(UWSGI_SCHEME=https)
        are sent too, so C(wsgi.url_scheme) is C(https).
    type: str
    choices: [http, https]
    default: https
  status:
    description:
      - The HTTP status codes an answer may have to pass.
    type: list
    elements: int
    default: [200]
  contains:
    description:
      - A string the body of an answer must contain to pass, for example the name of the
        release that should be live. The whole body is searched (up to 1 MiB), not only the
        part returned. V("") accepts any body.
      - >-
        For the JSON answer of the example site's C(/health/), V('"release": "NAME"') matches
        the release name exactly, where V(NAME) alone would also match a longer name.
    type: str
    default: ""
  timeout:
    description:
      - How many seconds to keep trying before failing. More than V(0).
    type: float
    default: 30
  interval:
    description:
      - Seconds to wait after a failed attempt before the next one. More than V(0).
    type: float
    default: 0.2
  request_timeout:
    description:
      - Seconds one attempt (connect, send, read the whole answer) may take. More than V(0).
    type: float
    default: 5
notes:
  - The module uses the Python standard library only on the managed host (Python 3.9 or later).
  - It reads at most 1 MiB of an answer.
seealso:
  - name: The uwsgi protocol
    description: The packet format the module sends with O(protocol=uwsgi).
    link: https://uwsgi-docs.readthedocs.io/en/latest/Protocol.html
'''

EXAMPLES = r'''
- name: Wait until gunicorn serves the release just switched to
  weblab.stack.socket_probe:
    socket: /run/gunicorn/weblab.sock
    host: www.example.com
    contains: '"release": "{{ __app_release }}"'
    timeout: 60

- name: Ask uWSGI for the health page over plain HTTP, accepting "unhealthy" too
  weblab.stack.socket_probe:
    socket: /run/uwsgi/weblab.sock
    protocol: uwsgi
    path: /health/
    host: localhost
    forwarded_proto: http
    status: [200, 503]
  register: __app_health
'''

RETURN = r'''
socket:
  description: The socket the requests went to.
  returned: always
  type: str
  sample: /run/gunicorn/weblab.sock
status:
  description:
    - The HTTP status of the last answer, or null when no attempt got one. When a later attempt
      got no answer (see RV(error)), this is still the answer before it.
  returned: always
  type: int
  sample: 200
body:
  description: The first 2000 characters of the body of the last answer (the one RV(status)
    belongs to; decoded as UTF-8, undecodable bytes replaced), or "" when no attempt got one.
  returned: always
  type: str
  sample: '{"release": "20250101-3f2a9c1d", "database": true, "cache": true, "status": "ok"}'
error:
  description: Why the last attempt got no answer (connection refused, timed out, ...), or null
    when it got one.
  returned: always
  type: str
  sample: null
attempts:
  description: How many requests were sent.
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds from the first attempt to the end of the last one.
  returned: always
  type: float
  sample: 0.48
msg:
  description: What happened. On failure it names the socket, the error of the last attempt
    when it got no answer, and the last answer (status, why it did not pass, the start of its
    body) when there was one.
  returned: always
  type: str
  sample: "/run/gunicorn/weblab.sock answered status 200 after 3 attempts in 0.48 s"
'''

import errno
import http.client as http_client
import io
import os
import socket
import stat
import time
from urllib.parse import unquote

from ansible.module_utils.basic import AnsibleModule

BODY_RETURNED = 2000
BODY_READ = 1024 * 1024
BODY_IN_MSG = 300
SUN_PATH_MAX = 107
USER_AGENT = 'weblab.stack.socket_probe'


class ProbeError(Exception):
    """A parameter cannot be used; the message names it."""


def validate(params):
    """Raise ProbeError naming the first parameter that cannot be used."""
    sock = params['socket']
    if not os.path.isabs(sock):
        raise ProbeError('socket must be an absolute path, got %r' % sock)
    if len(sock.encode('utf-8')) > SUN_PATH_MAX:
        raise ProbeError('socket %r is %d bytes long; a unix socket address holds at most %d'
                         % (sock, len(sock.encode('utf-8')), SUN_PATH_MAX))
    path = params['path']
    if not path.startswith('/'):
        raise ProbeError('path must begin with "/", got %r' % path)
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in path):
        raise ProbeError('path must not contain spaces or control characters (percent-encode '
                         'them), got %r' % path)
    host = params['host']
    if not host or any(char.isspace() or ord(char) < 32 or ord(char) == 127 or char in '/?#@'
                       for char in host):
        raise ProbeError('host must be a host name with an optional :port (no spaces, "/", '
                         '"?", "#" or "@"), got %r' % host)
    codes = params['status']
    if not codes:
        raise ProbeError('status must list at least one HTTP status code')
    wrong = [code for code in codes if not 100 <= code <= 599]
    if wrong:
        raise ProbeError('status must hold HTTP status codes (100-599), got %s'
                         % ', '.join(str(code) for code in wrong))
    for name in ('timeout', 'interval', 'request_timeout'):
        if not params[name] > 0:
            raise ProbeError('%s must be more than 0 seconds, got %s' % (name, params[name]))
    if params['protocol'] == 'uwsgi':
        uwsgi_packet(uwsgi_vars(path, host, params['forwarded_proto']))


def split_host(host, forwarded_proto):
    """Return (SERVER_NAME, SERVER_PORT) for a Host header value."""
    default_port = '443' if forwarded_proto == 'https' else '80'
    if host.startswith('['):
        name, sep, rest = host.partition(']')
        port = rest[1:] if rest.startswith(':') else ''
        return name + sep, port or default_port
    name, sep, port = host.rpartition(':')
    if sep and port.isdigit():
        return name, port
    return host, default_port


def http_request(path, host, forwarded_proto):
    """The request nginx's proxy_pass sends (HTTP/1.0, Connection: close), as bytes."""
    lines = [
        'GET %s HTTP/1.0' % path,
        'Host: %s' % host,
        'X-Forwarded-For: 127.0.0.1',
        'X-Forwarded-Proto: %s' % forwarded_proto,
        'User-Agent: %s' % USER_AGENT,
        'Accept: */*',
        'Connection: close',
    ]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('utf-8')


def uwsgi_vars(path, host, forwarded_proto):
    """The variables nginx's uwsgi_params and the site's uwsgi_param lines send, in order."""
    path_info, _sep, query = path.partition('?')
    server_name, server_port = split_host(host, forwarded_proto)
    pairs = [
        ('QUERY_STRING', query),
        ('REQUEST_METHOD', 'GET'),
        ('CONTENT_TYPE', ''),
        ('CONTENT_LENGTH', ''),
        ('REQUEST_URI', path),
        ('PATH_INFO', unquote(path_info)),
        ('SERVER_PROTOCOL', 'HTTP/1.1'),
        ('REQUEST_SCHEME', forwarded_proto),
    ]
    if forwarded_proto == 'https':
        pairs += [('HTTPS', 'on'), ('UWSGI_SCHEME', 'https')]
    pairs += [
        ('REMOTE_ADDR', '127.0.0.1'),
        ('REMOTE_PORT', '0'),
        ('SERVER_PORT', server_port),
        ('SERVER_NAME', server_name),
        ('HTTP_HOST', host),
        ('HTTP_X_FORWARDED_FOR', '127.0.0.1'),
        ('HTTP_X_FORWARDED_PROTO', forwarded_proto),
        ('HTTP_USER_AGENT', USER_AGENT),
        ('HTTP_ACCEPT', '*/*'),
    ]
    return pairs


def uwsgi_packet(pairs):
    """A uwsgi packet: modifier1 0, the size of the variables (16 bit little-endian), modifier2 0,
    then each key and value preceded by its 16 bit little-endian length."""
    data = bytearray()
    for key, value in pairs:
        for item in (key.encode('utf-8'), value.encode('utf-8')):
            if len(item) > 0xffff:
                raise ProbeError('the uwsgi variable %s is too long for the protocol (%d bytes, '
                                 'at most 65535): shorten path or host' % (key, len(item)))
            data += len(item).to_bytes(2, 'little') + item
    if len(data) > 0xffff:
        raise ProbeError('the uwsgi variables are %d bytes, over the 65535 the protocol allows: '
                         'shorten path or host' % len(data))
    return bytes(bytearray([0]) + len(data).to_bytes(2, 'little') + bytearray([0]) + data)


class DeadlineReader(io.RawIOBase):
    """The socket's input, each read bounded by what is left of the attempt's time."""

    def __init__(self, sock, deadline):
        super().__init__()
        self.sock = sock
        self.deadline = deadline

    def readable(self):
        return True

    def readinto(self, buffer):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout('timed out')
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class DeadlineSocket:
    """What http.client.HTTPResponse needs of a socket: makefile('rb')."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline

    def makefile(self, mode, *args, **kwargs):  # pylint: disable=unused-argument
        return io.BufferedReader(DeadlineReader(self.sock, self.deadline))


def describe_error(exc, socket_path):
    """A short reason for a failed attempt."""
    if isinstance(exc, socket.timeout):
        return 'no complete answer within the time of one attempt (timed out)'
    if isinstance(exc, http_client.RemoteDisconnected):
        return 'the server closed the connection without an answer'
    if isinstance(exc, http_client.HTTPException):
        return 'not an HTTP answer (%s: %s)' % (exc.__class__.__name__, exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = '%s (%s)' % (os.strerror(exc.errno), errno.errorcode.get(exc.errno, exc.errno))
        if exc.errno == errno.ECONNREFUSED:
            try:
                if not stat.S_ISSOCK(os.stat(socket_path).st_mode):
                    reason += ': the path is not a socket'
            except OSError:
                pass
        return reason
    return '%s: %s' % (exc.__class__.__name__, exc)


def request_once(params, deadline):
    """One attempt. Return (status, body text); raise OSError or HTTPException without an answer."""
    if params['protocol'] == 'uwsgi':
        payload = uwsgi_packet(uwsgi_vars(params['path'], params['host'], params['forwarded_proto']))
    else:
        payload = http_request(params['path'], params['host'], params['forwarded_proto'])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout('timed out')
        sock.settimeout(left)
        sock.connect(params['socket'])
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(payload)
        response = http_client.HTTPResponse(DeadlineSocket(sock, deadline), method='GET')
        response.begin()
        try:
            raw = response.read(BODY_READ)
        except http_client.IncompleteRead as exc:
            # The server closed before the length it announced: judge what arrived.
            raw = exc.partial
        return response.status, raw.decode('utf-8', 'replace')
    finally:
        sock.close()


def judge(params, status, body):
    """Why an answer does not pass, or None when it passes."""
    if status not in params['status']:
        return 'not an accepted status (%s)' % ', '.join(str(code) for code in params['status'])
    if params['contains'] and params['contains'] not in body:
        return 'its body does not contain %r' % params['contains']
    return None


def probe(params):
    """Try until an answer passes or the time runs out; return (ok, result)."""
    started = time.monotonic()
    end = started + params['timeout']
    attempts = 0
    # The last answer is kept when a later attempt gets none (for example the last one, cut
    # short at the timeout): it says more about what went wrong than "timed out".
    status, body, why = None, '', None
    while True:
        attempts += 1
        deadline = min(time.monotonic() + params['request_timeout'], end)
        error = None
        try:
            status, body = request_once(params, deadline)
            why = judge(params, status, body)
        except (OSError, http_client.HTTPException) as exc:
            error = describe_error(exc, params['socket'])
        now = time.monotonic()
        ok = error is None and why is None
        if ok or now + params['interval'] >= end:
            break
        time.sleep(params['interval'])
    elapsed = round(now - started, 3)
    result = dict(socket=params['socket'], status=status, body=body[:BODY_RETURNED], error=error,
                  attempts=attempts, elapsed=elapsed)
    tries = '%d attempt%s in %.2f s' % (attempts, '' if attempts == 1 else 's', elapsed)
    if ok:
        result['msg'] = '%s answered status %d after %s' % (params['socket'], status, tries)
        return ok, result
    failures = []
    if error is not None:
        failures.append('last attempt: %s' % error)
    if status is not None:
        shown = body[:BODY_IN_MSG] + ('...' if len(body) > BODY_IN_MSG else '')
        failures.append('last answer: status %d, %s; body: %r' % (status, why, shown))
    result['msg'] = ('%s gave no passing answer within timeout=%s (%s); %s'
                     % (params['socket'], params['timeout'], tries, '; '.join(failures)))
    return ok, result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type='path', required=True),
            protocol=dict(type='str', default='http', choices=['http', 'uwsgi']),
            path=dict(type='str', default='/health/'),
            host=dict(type='str', required=True),
            forwarded_proto=dict(type='str', default='https', choices=['http', 'https']),
            status=dict(type='list', elements='int', default=[200]),
            contains=dict(type='str', default=''),
            timeout=dict(type='float', default=30),
            interval=dict(type='float', default=0.2),
            request_timeout=dict(type='float', default=5),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        validate(params)
        ok, result = probe(params)
    except ProbeError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if not ok:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
