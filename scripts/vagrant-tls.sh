#!/usr/bin/env bash
# The Vagrant lab's CA and the site's certificate, made once on this machine and kept outside
# the repository (the Vagrantfile runs this before `vagrant up` and `vagrant provision`).
#
# Usage: vagrant-tls.sh NAME...   the names and addresses the site answers (its certificate's
#                                 subjectAltName); the site's certificate is made again when
#                                 they change, the CA never
#
# Files: $WEBLAB_VAGRANT_SECRETS (default ~/.config/weblab-stack/vagrant, the directory
# inventories/vagrant reads)/tls/{ca.crt,ca.key,site.crt,site.key}, directory 0700, files 0600.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: vagrant-tls.sh NAME..." >&2; exit 2; }

secrets=${WEBLAB_VAGRANT_SECRETS:-${XDG_CONFIG_HOME:-$HOME/.config}/weblab-stack/vagrant}
tls=$secrets/tls
umask 077
mkdir -p "$tls"
chmod 0700 "$secrets" "$tls"
cd "$tls"

sans=()
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ ]]; then sans+=("IP:$name"); else sans+=("DNS:$name"); fi
done
wanted=$(IFS=,; echo "${sans[*]}")

if [ ! -s ca.crt ] || [ ! -s ca.key ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weblab.stack Vagrant lab CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout ca.key -out ca.crt 2>/dev/null
    rm -f site.crt
    echo "vagrant-tls: made the lab's CA in $tls"
fi
if [ ! -s site.crt ] || [ ! -s site.key ] || [ "$(cat site.names 2>/dev/null)" != "$wanted" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout site.key -out site.csr 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$wanted" >site.ext
    openssl x509 -req -in site.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
        -extfile site.ext -out site.crt 2>/dev/null
    rm -f site.csr site.ext
    echo "$wanted" >site.names
    echo "vagrant-tls: made the site's certificate for $wanted"
fi
