"""The demo lab as a visitor on this machine sees it, through the loopback ports scripts/demo.sh
publishes: the site's health, an experiment written through the page's form (CSRF, a browser's
Origin) and shown on the page from PostgreSQL, and an experiment scheduled through the task-queue
front end's API that a worker runs and whose result reaches the site.

Usage: check_lab.py SECRETS_DIR [SITE_PORT [FRONTEND_PORT]]
Prints one line per check; exits 1 at the first failure."""

import http.cookiejar
import json
import pathlib
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

PROTOCOL = "input a = 2\noutput y = a * t\nsimulate 4\n"


def fail(message):
    print(f"check_lab: FAIL: {message}")
    sys.exit(1)


def request(opener, url, data=None, headers=None, method=None):
    """(status, text) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def check_site(secrets, port):
    """The site's health, then a row written through the form and read back on the page."""
    base = f"https://localhost:{port}"
    # Verified against the demo's CA only: the certificate must name localhost.
    context = ssl.create_default_context(cafile=str(secrets / "tls" / "ca.crt"))
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         urllib.request.HTTPCookieProcessor(jar))
    status, text = request(opener, f"{base}/health/")
    health = json.loads(text) if status in (200, 503) else {}
    if status != 200 or not health.get("database") or not health.get("cache"):
        fail(f"{base}/health/ answered {status}: {text[:300]}")
    print(f"check_lab: {base}/health/ 200, release {health['release']}, database and cache answer")

    status, page = request(opener, f"{base}/")
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if status != 200 or not match:
        fail(f"{base}/ answered {status} without the form: {page[:300]}")
    name = f"demo-check-{uuid.uuid4().hex[:12]}"
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": match.group(1), "name": name}).encode()
    # What a browser sends: its Origin and Referer carry the published port.
    status, page = request(opener, f"{base}/", form, {"Origin": base, "Referer": f"{base}/"})
    if status != 200 or f'<td class="name">{name}</td>' not in page:
        fail(f"POST {base}/ answered {status}, the page does not list {name}: {page[:500]}")
    print(f"check_lab: {base}/ lists experiment {name}, written through the form into PostgreSQL")
    return opener, base


def check_task_queue(secrets, site_opener, site_base, port):
    """An experiment scheduled through the front end runs on a worker; its result reaches the site."""
    base = f"https://localhost:{port}"
    # The front end's certificate is the one nginx made itself (self-signed).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    headers = {"Authorization": "Bearer " + (secrets / "tq-api-token").read_text().strip(),
               "Content-Type": "application/json"}
    body = json.dumps({"model": "linear", "protocol": PROTOCOL, "duration": 0.2}).encode()
    status, text = request(opener, f"{base}/api/experiments/", body, headers)
    if status != 202:
        fail(f"POST {base}/api/experiments/ answered {status}: {text[:300]}")
    ident = json.loads(text)["id"]
    deadline = time.monotonic() + 120
    experiment = {}
    while time.monotonic() < deadline:
        status, text = request(opener, f"{base}/api/experiments/{ident}/", headers=headers)
        experiment = json.loads(text) if status == 200 else {}
        if experiment.get("status") == "done":
            break
        time.sleep(1)
    else:
        fail(f"experiment {ident} not done after 120 s: {experiment}")
    print(f"check_lab: experiment {ident} scheduled through {base}, run on {experiment.get('worker_host')}")
    status, text = request(site_opener, f"{site_base}/results/{ident}/")
    if status != 200 or json.loads(text).get("status") != "done":
        fail(f"{site_base}/results/{ident}/ answered {status}: {text[:300]}")
    print(f"check_lab: its result reached the site: {site_base}/results/{ident}/")


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    secrets = pathlib.Path(sys.argv[1])
    site_port = sys.argv[2] if len(sys.argv) > 2 else "8443"
    frontend_port = sys.argv[3] if len(sys.argv) > 3 else "8444"
    site_opener, site_base = check_site(secrets, site_port)
    check_task_queue(secrets, site_opener, site_base, frontend_port)


if __name__ == "__main__":
    main()
