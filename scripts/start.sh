#!/usr/bin/env bash
# README's first command (`npm start`): runs Lifeboat on this machine — the controller (REST API,
# SQLite catalog in ~/.lifeboat, backup target directory ~/.lifeboat/target) with a datamover for
# this host inside it. Installs what is missing first and starts libvirt when it is not running.
#
#   npm start                          # prints the URL and, on the first start, the admin token
#   npm start -- --demo-vm             # also creates a tiny demo VM (TCG, no OS) if it is missing
#   npm start -- --listen 0.0.0.0:7780 # any other option goes to `lifeboat serve` (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."

demo=""
serve_args=()
for a in "$@"; do
  case "$a" in
  --demo-vm) demo=1 ;;
  *) serve_args+=("$a") ;;
  esac
done

bash scripts/install-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund  # not `npm ci`: see scripts/test.sh
fi

state="${LIFEBOAT_HOME:-$HOME/.lifeboat}"
mkdir -p "$state/run"
uri="${LIBVIRT_DEFAULT_URI:-qemu:///system}"

# libvirt: virtlogd + libvirtd, started the way the test service starts them (daemons already
# running are left alone). Without root we can only hope someone else runs them.
libvirt_ok=""
if virsh -c "$uri" version >/dev/null 2>&1; then
  libvirt_ok=1
elif [ "$(id -u)" -eq 0 ] && [ "$uri" = "qemu:///system" ]; then
  if bash scripts/services/libvirt.sh start "$state/run"; then libvirt_ok=1; fi
fi
if [ -z "$libvirt_ok" ]; then
  echo "start: libvirt at $uri does not answer; Lifeboat starts anyway, but cannot see or back up VMs until it does" >&2
else
  if [ -n "$demo" ]; then
    node bin/lifeboat.js demo-vm create --if-missing --libvirt-uri "$uri"
  elif [ "$(virsh -c "$uri" list --all --name | grep -c . || true)" -eq 0 ]; then
    echo "start: this host has no VMs yet. For a tiny demo VM (no OS, two small disks with data):"
    echo "         npm start -- --demo-vm      (or: npx lifeboat demo-vm create)"
  fi
fi

exec node bin/lifeboat.js serve --libvirt-uri "$uri" "${serve_args[@]}"
