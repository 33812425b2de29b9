#!/usr/bin/env bash
# The demo lab on this machine: four containers, the whole lab converged by the root site.yml.
#
# Usage: demo.sh up      start (or reuse) the containers, converge, print the URLs (make demo)
#        demo.sh down    remove the containers and the network; the secrets stay (make demo-down)
#        demo.sh playbook ARG...   ansible-playbook ARG... run as `up` runs it (tests/demo/run.sh)
#
# up: the Docker engine and the venv are there (make demo asks for them), and the collection is
# mirrored into .build (make collection). It builds or reuses the weblab-stack/debian12 image,
# makes the demo's CA and the site's certificate once (the passwords are made by the inventory's
# ansible.builtin.password lookups, once), starts weblab-demo-{broker,web,frontend,worker} on
# the network weblab-demo, publishes the site's HTTPS on 127.0.0.1:$WEBLAB_DEMO_PORT (8443) and
# the front end's on 127.0.0.1:$WEBLAB_DEMO_FRONTEND_PORT (8444), and runs
# `ansible-playbook -i inventories/demo site.yml`. Run again, it reuses the running containers
# and the converge changes nothing. The run's output is kept in .build/demo/converge.log.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
network=weblab-demo
hosts=(broker web frontend worker)
image=weblab-stack/debian12:latest
site_port=${WEBLAB_DEMO_PORT:-8443}
frontend_port=${WEBLAB_DEMO_FRONTEND_PORT:-8444}
# The same directory the inventory's demo_secrets names.
secrets=${WEBLAB_DEMO_SECRETS:-${XDG_CONFIG_HOME:-$HOME/.config}/weblab-stack/demo}
log_dir=$root/.build/demo
# Mitogen carries the tasks to the containers, as in the Molecule scenarios: one Python process
# per container for the whole run instead of a `docker exec` and a new interpreter per task
# (molecule/shared/strategy_plugins; the converge from nothing takes about a quarter of the
# time). The containers' interpreter is named, since Mitogen's discovery would start a `docker
# exec` per task. WEBLAB_DEMO_MITOGEN=0 runs Ansible's own strategy with the interpreter
# discovered quietly, as `ansible-playbook -i inventories/demo site.yml` by hand does (ansible.cfg;
# set here too for runs from outside the checkout, tests/demo/run.sh step 5).
if [ "${WEBLAB_DEMO_MITOGEN:-1}" = 1 ]; then
    export ANSIBLE_STRATEGY_PLUGINS=$root/molecule/shared/strategy_plugins \
        ANSIBLE_STRATEGY=weblab_mitogen_linear ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3
else
    export ANSIBLE_PYTHON_INTERPRETER=auto_silent
fi

say() { printf '\n==> demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

container_state() { docker container inspect -f '{{.State.Status}}' "$1" 2>/dev/null || true; }

# The demo's CA and the site's certificate (for the names the site answers: the container's
# name, which the worker posts results to, and the published port's localhost and 127.0.0.1).
make_certificates() {
    local tls=$secrets/tls
    [ -s "$tls/site.crt" ] && [ -s "$tls/site.key" ] && [ -s "$tls/ca.crt" ] && return 0
    (
        umask 077
        mkdir -p "$tls"
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weblab.stack demo CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=weblab-demo-web" \
            -keyout site.key -out site.csr 2>/dev/null
        printf 'subjectAltName=DNS:weblab-demo-web,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
            >site.ext
        openssl x509 -req -in site.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
            -extfile site.ext -out site.crt 2>/dev/null
        rm -f site.csr site.ext
    )
    echo "demo: made the demo CA and the site's certificate in $tls"
}

start_containers() {
    docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
    local host name state publish
    for host in "${hosts[@]}"; do
        name=weblab-demo-$host
        state=$(container_state "$name")
        case "$state" in
            running) echo "demo: reusing $name"; continue ;;
            "") ;;
            *) echo "demo: starting $name again ($state)"; docker start "$name" >/dev/null; continue ;;
        esac
        publish=()
        case "$host" in
            web) publish=(-p "127.0.0.1:$site_port:443") ;;
            frontend) publish=(-p "127.0.0.1:$frontend_port:443") ;;
        esac
        # systemd as PID 1 without --privileged, as the Molecule scenarios run the image.
        docker run -d --name "$name" --hostname "$name" --network "$network" \
            --label org.weblab.demo=1 "${publish[@]}" \
            --cap-add SYS_ADMIN --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
            --tmpfs /run --tmpfs /run/lock \
            --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
            "$image" /lib/systemd/systemd >/dev/null
        echo "demo: started $name"
    done
    # The published ports must be the ones asked for (a lab started with other ports keeps its own).
    local web_port
    web_port=$(docker port weblab-demo-web 443/tcp | head -n1)
    [ "$web_port" = "127.0.0.1:$site_port" ] ||
        die "weblab-demo-web publishes $web_port, not 127.0.0.1:$site_port: make demo-down first"
    for host in "${hosts[@]}"; do
        name=weblab-demo-$host
        for _ in $(seq 60); do
            state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
            case "$state" in running | degraded) break ;; esac
            sleep 1
        done
        case "$state" in running | degraded) ;; *) die "systemd in $name did not start ($state)" ;; esac
    done
}

# The root site.yml against inventories/demo; fails unless every host is ok. Prints the recap's
# changed count and keeps the output in $log_dir/converge.log.
converge() {
    mkdir -p "$log_dir"
    cd "$root"
    ANSIBLE_DISPLAY_SKIPPED_HOSTS=false ansible-playbook -i inventories/demo site.yml \
        | tee "$log_dir/converge.log"
    local changed
    changed=$(awk '/^PLAY RECAP/ {recap = 1} recap && match($0, /changed=[0-9]+/) {
                       n += substr($0, RSTART + 8, RLENGTH - 8)} END {print n + 0}' "$log_dir/converge.log")
    if [ "$changed" -eq 0 ]; then
        echo "demo: converged; changed=0 on every host (nothing to do)"
    else
        echo "demo: converged; $changed changes"
    fi
}

up() {
    local start=$SECONDS
    say "[1/4] image $image"
    "$root/scripts/build-image.sh" debian12
    say "[2/4] secrets and certificates in $secrets (outside the repository, mode 0700)"
    mkdir -p "$secrets"
    chmod 0700 "$secrets"
    make_certificates
    say "[3/4] containers on the network $network"
    start_containers
    say "[4/4] converge: ansible-playbook -i inventories/demo site.yml (the first run takes about 5 minutes)"
    converge
    cat <<EOF

The demo lab is up ($((SECONDS - start)) s).
  site       https://localhost:$site_port/
             its certificate is signed by the demo's CA: $secrets/tls/ca.crt
             (curl --cacert $secrets/tls/ca.crt https://localhost:$site_port/health/)
  front end  https://localhost:$frontend_port/health/   (self-signed; curl -k)
             API token: $secrets/tq-api-token
Run \`make demo\` again to converge again (it changes nothing), \`make demo-down\` to remove the
containers and the network (the secrets in $secrets stay).
EOF
}

down() {
    local host name
    for host in "${hosts[@]}"; do
        name=weblab-demo-$host
        if [ -n "$(container_state "$name")" ]; then
            docker rm -f "$name" >/dev/null
            echo "demo: removed $name"
        fi
    done
    if docker network inspect "$network" >/dev/null 2>&1; then
        docker network rm "$network" >/dev/null
        echo "demo: removed the network $network"
    fi
    echo "demo: the secrets in $secrets stay (delete the directory to start over with new ones)"
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    playbook) shift; exec ansible-playbook "$@" ;;
    *) die "usage: demo.sh up|down|playbook ARG..." ;;
esac
