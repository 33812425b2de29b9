"""The whole lab after weblab.stack.site: the site's page through nginx with rows from
PostgreSQL, an experiment scheduled through the front end that runs on the worker and shows on
the site, a dump made and restored with the lab's playbooks, and the shared values set once in
the inventory (app name, deploy path, database port, backup directory) found in every role
that needs them."""

import uuid

import pytest
from lab_inventory import APP, DATA, PORT, SITE_NAME, VARS
from weblab_lab import http
from weblab_testinfra import run_playbook, superuser_sql

DEPLOY = VARS["weblab_deploy_path"]
BACKUPS = VARS["weblab_backup_dir"]


def site_sql(web, query):
    return superuser_sql(web, query, database=APP, port=PORT)


def page(web, path="/"):
    """GET PATH of the site from its own host through nginx, the certificate verified."""
    [(status, body)] = http(web, "GET", f"https://{SITE_NAME}{path}")
    return status, body


def add_row(web, prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    site_sql(web, f"INSERT INTO lab_experiment (name, created, release) VALUES ('{name}', now(), 'test')")
    return name


def test_page_shows_rows_from_postgresql(web):
    name = add_row(web, "site")
    status, body = page(web)
    assert status == 200, body
    assert name in body


def test_experiment_from_the_front_end_shows_on_the_site(queue, worker, web):
    ident = queue.schedule(0.2)
    done = queue.wait_until_done(ident, 90, worker)
    assert done["worker_host"] == worker.check_output("hostname"), done
    assert worker.file(f"{DATA}/{ident}/output.csv").is_file
    status, body = page(web)
    assert status == 200, body
    assert ident in body, "the result is not on the site's page"
    status, result = page(web, f"/results/{ident}/")
    assert status == 200 and result["output_sha256"] == done["output_sha256"], result


def test_database_listens_on_the_inventorys_port_only(web):
    # ss cannot name PostgreSQL's processes here (its sandbox hides them from root's ss -p):
    # the ports of the listening sockets, and PostgreSQL's own word for its port.
    listening = web.check_output("ss -Htln").splitlines()
    ports = {line.split()[3].rsplit(":", 1)[1] for line in listening}
    assert str(PORT) in ports and "5432" not in ports, listening
    assert superuser_sql(web, "SHOW port", port=PORT) == str(PORT)


def test_site_runs_from_the_inventorys_deploy_path_under_its_name(web):
    assert web.file(f"{DEPLOY}/current").is_symlink
    main_pid = web.check_output("systemctl show -p MainPID --value gunicorn-%s.service", APP)
    assert main_pid != "0", web.run("journalctl -u gunicorn-%s --no-pager -n 30", APP).stdout
    assert web.process.get(pid=int(main_pid)).user == f"{APP}-run"
    assert web.file(f"/etc/nginx/sites-enabled/{APP}.conf").exists


def test_health_reports_the_database_at_the_inventorys_port(web):
    status, body = page(web, "/health/")
    assert status == 200 and body["database"] is True, body
    assert f"DJANGO_DB_PORT='{PORT}'" in web.file(f"{DEPLOY}/current/.weblab/app.env").content_string


@pytest.mark.parametrize("database", [APP, "taskqueue"])
def test_timer_dumps_into_the_inventorys_backup_directory(web, database):
    unit = f"weblab-backup-{database}.service"
    started = web.run("systemctl start %s", unit)
    assert started.rc == 0, web.run("journalctl -u %s --no-pager -n 30", unit).stdout
    dumps = web.run("ls %s", BACKUPS).stdout.split()
    assert any(name.startswith(f"{database}-") and name.endswith(".dump") for name in dumps), dumps


def test_backup_and_restore_playbooks_give_back_the_dumped_rows(web):
    kept = add_row(web, "kept")
    label = f"site-{uuid.uuid4().hex[:6]}"
    rc, output = run_playbook("weblab.stack.backup", host=web, backup_label=label)
    assert rc == 0, output[-3000:]
    assert any(label in name for name in web.run("ls %s", BACKUPS).stdout.split()), "the dump is not in " + BACKUPS
    dropped = add_row(web, "after-dump")
    rc, output = run_playbook("weblab.stack.restore", host=web, restore_confirm="yes", restore_label=label,
                              restore_database=APP)
    assert rc == 0, output[-3000:]
    names = site_sql(web, "SELECT name FROM lab_experiment").splitlines()
    assert kept in names and dropped not in names, names[-5:]
    status, body = page(web)
    assert status == 200 and kept in body and dropped not in body
