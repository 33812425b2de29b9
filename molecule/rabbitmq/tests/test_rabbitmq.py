"""Behaviour of weblab.stack.rabbitmq on a converged host (see ../molecule.yml)."""

import uuid

NODE = "rabbit@localhost"

# Publishes one message to a fresh queue on VHOST as USER and consumes it back, over AMQP on
# 127.0.0.1:5672. Prints "ok BODY" or "refused REASON".
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


def test_guest_is_refused(host):
    _body, answer = amqp(host, "guest", "guest", "/")
    assert answer.startswith("refused"), answer


def test_guest_user_is_gone(host):
    out = host.run("rabbitmqctl -q -n %s list_users", NODE)
    assert out.rc == 0, out.stderr + journal(host)
    assert "guest" not in out.stdout.split()


def test_app_user_cannot_use_another_vhost(host):
    _body, answer = amqp(host, "labapp", "app-Secret-42", "otherlab")
    assert answer.startswith("refused"), answer


def test_wrong_password_is_refused(host):
    _body, answer = amqp(host, "labapp", "not-the-password", "labqueue")
    assert answer.startswith("refused"), answer


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
