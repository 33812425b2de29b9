"""Behaviour of weblab.stack.redis on a converged host (molecule/redis/molecule.yml): Debian 12
with the defaults (rdb, allkeys-lru), Debian 13 as a broker (aof, noeviction); both with the
users labapp (default rules) and labcache (keys cache:* only, no channels).

The checks run redis-cli inside the container as a client would; passwords reach it through
REDISCLI_AUTH, not its argv.
"""

import os
import re
import time
import uuid

import pytest
from weblab_testinfra import PROJECT, assert_no_secret_in_vvv, exposure

CONVERGE = os.path.join(PROJECT, "molecule", "redis", "converge.yml")
PORT = "6379"
ADMIN = ("admin", "molecule-redis-Admin-Secret-42")
LABAPP = ("labapp", "molecule-redis-labapp-Secret-42")
LABCACHE = ("labcache", "molecule-redis-labcache-Secret-42")
SECRETS = (ADMIN[1], LABAPP[1], LABCACHE[1])
DATA_DIR = "/var/lib/redis"


def settings(host):
    """(persistence, maxmemory policy) the scenario gives HOST."""
    if host.backend.get_hostname().endswith("debian13"):
        return "aof", "noeviction"
    return "rdb", "allkeys-lru"


def journal(host):
    return host.run("journalctl -u redis-server --no-pager -n 40").stdout


def cli(host, login, *args):
    """redis-cli ARGS as LOGIN (user, password), or without logging in when LOGIN is None; its
    output, stripped."""
    words = " ".join(["%s"] * len(args))
    if login is None:
        out = host.run("redis-cli -h 127.0.0.1 -p %s " + words, PORT, *args)
    else:
        out = host.run("REDISCLI_AUTH=%s redis-cli --no-auth-warning --user %s -h 127.0.0.1 -p %s " + words,
                       login[1], login[0], PORT, *args)
    assert out.rc == 0, out.stderr + journal(host)
    return out.stdout.strip()


def config_get(host, name):
    """The admin's CONFIG GET NAME; None when redis has no such setting."""
    out = host.run("REDISCLI_AUTH=%s redis-cli --no-auth-warning --user %s -h 127.0.0.1 -p %s CONFIG GET %s",
                   ADMIN[1], ADMIN[0], PORT, name)
    assert out.rc == 0, out.stderr + journal(host)
    # Name and value on a line each; an empty value is an empty line.
    lines = out.stdout.split("\n")
    return dict(zip(lines[::2], lines[1::2])).get(name)


def test_redis_is_running_and_enabled(host):
    service = host.service("redis-server")
    assert service.is_running, journal(host)
    assert service.is_enabled


def test_app_user_can_set_and_get(host):
    key, value = "labapp:" + uuid.uuid4().hex, uuid.uuid4().hex
    assert cli(host, LABAPP, "SET", key, value) == "OK"
    assert cli(host, LABAPP, "GET", key) == value


def test_unauthenticated_client_is_refused(host):
    assert cli(host, None, "PING").startswith("NOAUTH"), journal(host)
    assert cli(host, None, "GET", "anything").startswith("NOAUTH")


def test_default_user_cannot_log_in(host):
    assert cli(host, None, "AUTH", "default", "anything").startswith("WRONGPASS")
    # AUTH with a password only logs in as `default`.
    assert cli(host, None, "AUTH", "").startswith("WRONGPASS")


def test_default_user_is_off_without_commands(host):
    rules = cli(host, ADMIN, "ACL", "LIST").splitlines()
    default = [rule for rule in rules if rule.startswith("user default ")]
    assert default and " off " in default[0] and "-@all" in default[0], rules


def test_wrong_password_is_refused(host):
    out = host.run("REDISCLI_AUTH=not-the-password redis-cli --no-auth-warning --user labapp -h 127.0.0.1 -p %s PING",
                   PORT)
    assert "WRONGPASS" in out.stdout + out.stderr, (out.stdout, out.stderr)
    assert "PONG" not in out.stdout


@pytest.mark.parametrize("command", [["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "*"],
                                     ["SHUTDOWN"], ["ACL", "LIST"], ["SAVE"], ["BGSAVE"], ["BGREWRITEAOF"],
                                     ["REPLICAOF", "NO", "ONE"], ["MONITOR"], ["MODULE", "LIST"],
                                     ["CLUSTER", "INFO"]])
def test_app_user_is_refused_dangerous_commands(host, command):
    answer = cli(host, LABAPP, *command)
    assert answer.startswith("NOPERM"), (command, answer)


# What the ACL rules alone decide (DEBUG is also off for everyone, enable-debug-command no).
@pytest.mark.parametrize("command", [["flushall"], ["flushdb"], ["config", "set", "save", ""], ["debug", "sleep", "0"],
                                     ["shutdown"], ["keys", "*"], ["monitor"], ["acl", "whoami"],
                                     ["module", "list"], ["save"], ["bgsave"], ["bgrewriteaof"],
                                     ["replicaof", "no", "one"], ["slaveof", "no", "one"],
                                     ["migrate", "10.0.0.1", "6379", "k", "0", "100"], ["cluster", "info"]])
def test_acl_denies_the_app_user_dangerous_commands(host, command):
    answer = cli(host, ADMIN, "ACL", "DRYRUN", LABAPP[0], *command)
    assert "no permissions" in answer, (command, answer)


def test_acl_allows_the_app_user_everyday_commands(host):
    for command in (["get", "k"], ["set", "k", "v"], ["lpush", "celery", "x"], ["brpop", "celery", "1"],
                    ["subscribe", "celery-task-meta-x"], ["scan", "0"], ["expire", "k", "10"]):
        assert cli(host, ADMIN, "ACL", "DRYRUN", LABAPP[0], *command) == "OK", command


def test_refused_flushall_flushed_nothing(host):
    key = "survivor:" + uuid.uuid4().hex
    cli(host, LABAPP, "SET", key, "1")
    assert cli(host, LABAPP, "FLUSHALL").startswith("NOPERM")
    assert cli(host, LABAPP, "EXISTS", key) == "1"


def test_confined_user_keeps_to_its_key_patterns(host):
    assert cli(host, LABCACHE, "SET", "cache:" + uuid.uuid4().hex, "1") == "OK"
    assert cli(host, LABCACHE, "SET", "celery:" + uuid.uuid4().hex, "1").startswith("NOPERM")
    assert cli(host, LABCACHE, "PUBLISH", "celery-task-meta-x", "1").startswith("NOPERM")
    assert cli(host, LABAPP, "PUBLISH", "celery-task-meta-x", "1") == "0"


def test_only_the_configured_users_exist(host):
    assert sorted(cli(host, ADMIN, "ACL", "USERS").split()) == ["admin", "default", "labapp", "labcache"]


def test_listens_only_on_loopback(host):
    out = host.run("ss -Hlnt")
    assert out.rc == 0, out.stderr
    local = [line.split()[3] for line in out.stdout.splitlines() if line.strip()]
    assert sorted(addr.rsplit(":", 1)[0] for addr in local if addr.rsplit(":", 1)[1] == PORT) == \
        ["127.0.0.1"], out.stdout


def test_container_address_is_refused(host):
    addresses = [a for a in host.run("hostname -I").stdout.split() if not a.startswith("127.")]
    assert addresses, "the container has no non-loopback address to try"
    for address in addresses:
        out = host.run("redis-cli -h %s -p %s PING", address, PORT)
        assert "PONG" not in out.stdout and "NOAUTH" not in out.stdout, (address, out.stdout, out.stderr)


def test_protected_mode_is_on(host):
    assert config_get(host, "protected-mode") == "yes"


def test_maxmemory_is_in_effect(host):
    assert config_get(host, "maxmemory") == str(64 * 1024 * 1024)


def test_maxmemory_policy_is_in_effect(host):
    assert config_get(host, "maxmemory-policy") == settings(host)[1]


def test_persistence_settings_are_in_effect(host):
    persistence = settings(host)[0]
    assert config_get(host, "appendonly") == ("yes" if persistence == "aof" else "no")
    assert (config_get(host, "save") != "") == (persistence == "rdb")


def test_persistence_writes_to_disk(host):
    """rdb: the admin's SAVE writes dump.rdb with the key; aof: the write is in the log."""
    key = "disk-" + uuid.uuid4().hex[:8]
    assert cli(host, LABAPP, "SET", key, "on-disk") == "OK"
    if settings(host)[0] == "rdb":
        assert cli(host, ADMIN, "SAVE") == "OK"
        path = DATA_DIR + "/dump.rdb"
    else:
        path = DATA_DIR + "/appendonlydir/*.incr.aof"
    for _attempt in range(20):
        out = host.run("grep -c %s " + path, key)
        if out.stdout.strip() not in ("", "0"):
            break
        time.sleep(0.2)
    assert out.rc == 0, (path, out.stdout, out.stderr, host.run("ls -laR %s", DATA_DIR).stdout)


def test_data_survives_a_restart(host):
    key, value = "restart:" + uuid.uuid4().hex, uuid.uuid4().hex
    assert cli(host, LABAPP, "SET", key, value) == "OK"
    assert host.run("systemctl restart redis-server").rc == 0, journal(host)
    for _attempt in range(50):
        answer = cli(host, LABAPP, "GET", key)
        if not answer.startswith("LOADING"):
            break
        time.sleep(0.2)
    assert answer == value, journal(host)


def test_acl_file_holds_hashes_only(host):
    acl = host.file("/etc/redis/users.acl")
    assert (acl.user, acl.group, acl.mode) == ("root", "redis", 0o640)
    content = acl.content_string
    for secret in SECRETS:
        assert secret not in content
    assert re.search(r"^user labapp on #[0-9a-f]{64} ", content, re.MULTILINE), content[:300]


def test_config_file_is_managed(host):
    config = host.file("/etc/redis/redis.conf")
    assert (config.user, config.group, config.mode) == ("root", "redis", 0o640)
    assert "Ansible managed" in "\n".join(config.content_string.splitlines()[:3])


def test_unit_exposure_is_at_most_3(host):
    assert exposure(host, "redis-server.service") <= 3.0


def test_unit_uses_the_hardening_drop_in(host):
    out = host.run("systemctl show -p DropInPaths -p UMask -p ReadWritePaths redis-server")
    assert "redis-server.service.d/weblab.conf" in out.stdout, out.stdout
    assert "UMask=0077" in out.stdout, out.stdout
    assert "/etc/redis" not in out.stdout.split("ReadWritePaths=", 1)[1], out.stdout


def test_no_secret_in_a_vvv_run(host):
    if not host.backend.get_hostname().endswith("debian12"):
        pytest.skip("the same secrets take the same paths on both hosts: one -vvv run proves it")
    assert_no_secret_in_vvv(host, CONVERGE, SECRETS)
