"""Behaviour of weblab.stack.rabbitmq on a converged host (see ../molecule.yml)."""

import os
import uuid

from weblab_testinfra import run_playbook

NODE = "rabbit@localhost"
# Playbooks the tests run against the converged hosts (the scenario's inventory and variables).
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "steps")

# Publishes one message to a fresh queue on VHOST as USER and consumes it back, over AMQP on
# 127.0.0.1:5672. Prints "ok BODY", or "refused " and the client's exception, which quotes the
# broker's own reply when the broker closed the connection (e.g. "(403) 'ACCESS_REFUSED - ...").
CLIENT = r"""
import sys, pika
user, password, vhost, body = sys.argv[1:5]
params = pika.ConnectionParameters('127.0.0.1', 5672, vhost, pika.PlainCredentials(user, password),
                                   connection_attempts=1, socket_timeout=5)
try:
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    queue = 'weblab-test-' + body
    ch.queue_declare(queue=queue, auto_delete=True)
    ch.basic_publish(exchange='', routing_key=queue, body=body.encode())
    for _ in range(50):
        method, _props, got = ch.basic_get(queue=queue, auto_ack=True)
        if method:
            print('ok', got.decode())
            break
        conn.sleep(0.1)
    else:
        print('lost')
    conn.close()
except Exception as exc:
    print('refused', type(exc).__name__, exc)
"""


def journal(host):
    out = host.run("journalctl --no-pager -n 20 -u rabbitmq-server; tail -n 20 /var/log/rabbitmq/*.log")
    return "\n--- journal and log ---\n" + out.stdout


def amqp(host, user, password, vhost):
    body = uuid.uuid4().hex
    out = host.run("python3 -c %s %s %s %s %s", CLIENT, user, password, vhost, body)
    return body, out.stdout.strip()


def test_app_user_publishes_and_consumes_on_its_vhost(host):
    body, answer = amqp(host, "labapp", "app-Secret-42", "labqueue")
    assert answer == f"ok {body}", answer + journal(host)


def assert_broker_answers(host):
    """The permitted user gets through first: a refusal that follows comes from a running broker
    that said no, not from a broker that is down."""
    body, answer = amqp(host, "labapp", "app-Secret-42", "labqueue")
    assert answer == f"ok {body}", "the broker does not answer the permitted user: " + answer + journal(host)


# What RabbitMQ answers a login it refuses (AMQP connection.close, reply code 403).
BAD_LOGIN = "(403) 'ACCESS_REFUSED - Login was refused"


def test_guest_is_refused(host):
    assert_broker_answers(host)
    _body, answer = amqp(host, "guest", "guest", "/")
    assert answer.startswith("refused") and BAD_LOGIN in answer, answer


def test_guest_user_is_gone(host):
    out = host.run("rabbitmqctl -q -n %s list_users", NODE)
    assert out.rc == 0, out.stderr + journal(host)
    assert "guest" not in out.stdout.split()


def test_app_user_cannot_use_another_vhost(host):
    assert_broker_answers(host)
    _body, answer = amqp(host, "labapp", "app-Secret-42", "otherlab")
    # connection.close 530 for a vhost that exists but grants this user nothing (a missing
    # vhost would say "vhost otherlab not found").
    assert answer.startswith("refused"), answer
    assert "(530)" in answer and "NOT_ALLOWED - access to vhost 'otherlab' refused for user 'labapp'" in answer, answer


def test_wrong_password_is_refused(host):
    assert_broker_answers(host)
    _body, answer = amqp(host, "labapp", "not-the-password", "labqueue")
    assert answer.startswith("refused") and BAD_LOGIN in answer, answer


def listeners(host, port):
    out = host.run("ss -Hltn 'sport = :%s'", str(port))
    return sorted({line.split()[3] for line in out.stdout.splitlines() if line.strip()})


def test_amqp_listens_only_on_loopback(host):
    assert listeners(host, 5672) == ["127.0.0.1:5672"], journal(host)


def test_epmd_listens_only_on_loopback(host):
    assert listeners(host, 4369) == ["127.0.0.1:4369"]


def test_distribution_port_listens_only_on_loopback(host):
    assert listeners(host, 25672) == ["127.0.0.1:25672"]


def test_management_plugin_is_off(host):
    assert listeners(host, 15672) == []
    out = host.run("rabbitmq-plugins -n %s list -e -m", NODE)
    assert "rabbitmq_management" not in out.stdout.split()


def test_consumer_timeout_is_in_effect(host):
    out = host.run("rabbitmqctl -q -n %s eval 'application:get_env(rabbit, consumer_timeout).'", NODE)
    assert out.stdout.strip() == "{ok,5400000}", out.stdout + out.stderr


def test_erlang_cookie_is_the_configured_one(host):
    cookie = host.file("/var/lib/rabbitmq/.erlang.cookie")
    assert cookie.content_string == "MoleculeCookie0123456789abcdef"
    assert cookie.mode == 0o400
    assert cookie.user == "rabbitmq"


def test_cookie_change_stopped_the_broker_cleanly(host):
    # The package started the broker with a cookie of its own, so converge replaced the cookie
    # of a running broker. Written under it, systemd's stop (rabbitmqctl stop) can no longer
    # reach the node: "Control process exited, code=exited, status=69" and "Failed with result".
    out = host.run("journalctl --no-pager -o cat -u rabbitmq-server")
    stops = [line for line in out.stdout.splitlines() if line.startswith("Stopped rabbitmq-server")]
    failures = [line for line in out.stdout.splitlines()
                if "Control process exited" in line or "Failed with result" in line]
    assert stops, out.stdout
    assert failures == [], out.stdout


def test_broker_is_enabled_at_boot(host):
    assert host.service("rabbitmq-server").is_enabled


# The tests below run the role again through steps/*.yml; each leaves the host as converged.

def main_pid(host):
    return host.run("systemctl show -p MainPID --value rabbitmq-server").stdout.strip()


def broker_status(host, node=NODE):
    """`rabbitmqctl status` over the Erlang distribution: epmd and the node must both answer."""
    return host.run("rabbitmqctl -q -n %s status", node)


def changed_tasks(output):
    """Names of the tasks an ansible-playbook run (default callback) reported changed."""
    changed, task = set(), None
    for line in output.splitlines():
        if line.startswith("TASK [") or line.startswith("RUNNING HANDLER ["):
            task = line[line.index("[") + 1:line.rindex("]")]
        elif line.startswith("changed: ") and task:
            changed.add(task)
    return changed


def own_address(host):
    """The container's address on its network, which the host name resolves to."""
    return host.run("getent ahostsv4 %s", host.check_output("hostname")).stdout.split()[0]


def test_epmd_drop_in_change_alone_restarts_the_broker(host):
    # The drop-in's handler stops the broker to restart epmd.socket: the broker must be started
    # again by the same run, not left stopped for the role's wait to time out.
    pid_before = main_pid(host)
    rc, output = run_playbook(os.path.join(STEPS, "epmd_drop_in_drift.yml"), host=host)
    try:
        assert rc == 0, output[-4000:] + journal(host)
        assert "weblab.stack.rabbitmq : Keep epmd on the distribution address" in changed_tasks(output), output
        assert main_pid(host) not in ("0", pid_before), "the broker was not restarted" + journal(host)
        assert broker_status(host).rc == 0, broker_status(host).stderr + journal(host)
        assert listeners(host, 4369) == ["127.0.0.1:4369"]
    finally:
        host.run("systemctl start rabbitmq-server")


def test_distribution_address_the_node_name_does_not_resolve_to_is_refused(host):
    # rabbit@localhost: the CLI tools and other nodes reach the node at what "localhost" resolves
    # to, so a distribution port elsewhere would leave the node unreachable (and the role's wait
    # timing out). The role must refuse before anything changes, and the broker keep running.
    pid_before = main_pid(host)
    rc, output = run_playbook(os.path.join(STEPS, "apply.yml"), host=host,
                              rabbitmq_dist_listen_address=own_address(host))
    try:
        assert rc != 0, output[-4000:]
        assert "rabbitmq_dist_listen_address" in output and "rabbitmq_nodename" in output, output[-4000:]
        assert not changed_tasks(output), output[-4000:]
        assert main_pid(host) == pid_before, "the broker was restarted" + journal(host)
    finally:
        if main_pid(host) != pid_before or broker_status(host).rc != 0:
            # The role went ahead: back to the scenario's settings.
            run_playbook(os.path.join(STEPS, "apply_stopped.yml"), host=host)


def test_distribution_moves_to_the_address_of_the_node_name(host):
    # A node named after the host (which resolves to its network address) with epmd and the
    # distribution port on that address: the broker starts, the CLI reaches it over that address
    # and epmd stays on loopback as well, where every local Erlang node registers.
    address = own_address(host)
    name = "rabbit@" + host.check_output("hostname")
    rc, output = run_playbook(os.path.join(STEPS, "apply_stopped.yml"), host=host,
                              rabbitmq_nodename=name, rabbitmq_dist_listen_address=address)
    try:
        assert rc == 0, output[-4000:] + journal(host)
        status = broker_status(host, name)
        assert status.rc == 0, status.stderr + journal(host)
        assert listeners(host, 25672) == [f"{address}:25672"], journal(host)
        assert listeners(host, 4369) == sorted(["127.0.0.1:4369", f"{address}:4369"]), journal(host)
        assert_broker_answers(host)
    finally:
        # Back to the scenario's node (and its database) on loopback.
        back_rc, back_output = run_playbook(os.path.join(STEPS, "apply_stopped.yml"), host=host)
        assert back_rc == 0, back_output[-4000:] + journal(host)


def test_check_mode_reports_a_password_the_role_would_reset(host):
    out = host.run("rabbitmqctl -q -n %s change_password labapp %s", NODE, "changed-by-hand-1")
    assert out.rc == 0, out.stderr
    try:
        rc, output = run_playbook(os.path.join(STEPS, "apply.yml"), "--check", host=host)
        assert rc == 0, output[-4000:]
        assert "weblab.stack.rabbitmq : Report the users a real run changes" in changed_tasks(output), output
        # ... and changed nothing.
        assert host.run("rabbitmqctl -q -n %s authenticate_user labapp %s", NODE, "changed-by-hand-1").rc == 0
    finally:
        host.run("rabbitmqctl -q -n %s change_password labapp %s", NODE, "app-Secret-42")


def test_check_mode_reports_the_guest_user_the_role_would_remove(host):
    out = host.run("rabbitmqctl -q -n %s add_user guest guest", NODE)
    assert out.rc == 0, out.stderr
    try:
        rc, output = run_playbook(os.path.join(STEPS, "apply.yml"), "--check", host=host)
        assert rc == 0, output[-4000:]
        assert "weblab.stack.rabbitmq : Report the guest user a real run removes" in changed_tasks(output), output
    finally:
        host.run("rabbitmqctl -q -n %s delete_user guest", NODE)
