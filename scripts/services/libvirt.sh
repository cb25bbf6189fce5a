#!/usr/bin/env bash
# Test service: libvirt (virtlogd + libvirtd) for the hypervisor tests, QEMU in TCG mode.
#
#   scripts/services/libvirt.sh start STATE_DIR   # starts what is not running yet, writes STATE_DIR/libvirt.env
#   scripts/services/libvirt.sh stop STATE_DIR    # stops only the daemons this script started (by PID)
#
# The machine has no systemd, so the daemons run with -d and write their usual PID files; the PIDs of
# the ones *we* started are copied to STATE_DIR so `stop` never touches a daemon someone else runs.
# Test domains use `<interface type='user'>` (QEMU's slirp), so libvirt's `default` network is never
# required — on this machine it cannot even start ("Unable to find 'dnsmasq' binary"). A test that
# needs a libvirt network defines an isolated one without <ip> (just `<bridge name='...'/>`): that
# needs no dnsmasq and starts fine here.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
service_args "$@"
uri="qemu:///system"
# QEMU runs as libvirt-qemu: test disks, scratch files and NBD sockets must sit where it can reach
# them, so this directory (and every parent) is world-traversable and sticky like /tmp.
vmdir="${LIFEBOAT_TEST_VMDIR:-/var/tmp/lifeboat-test-vms}"

start_daemon() { # $1 = daemon name, $2 = pid file
  if pid_named "$1" "$2" >/dev/null || pgrep -x "$1" >/dev/null; then
    echo "libvirt: $1 already running, leaving it alone"
    return 0
  fi
  "/usr/sbin/$1" -d -p "$2"
  local pid=""
  for _ in $(seq 1 50); do
    pid=$(pid_named "$1" "$2" || true)
    [ -n "$pid" ] && break
    sleep 0.1
  done
  if [ -z "$pid" ]; then
    echo "libvirt: $1 did not start" >&2
    exit 1
  fi
  echo "$pid" >"$state/libvirt.$1.pid"
  echo "libvirt: started $1 (pid $pid)"
}

case "$cmd" in
start)
  mkdir -p /run/libvirt
  # Without udev nobody applies Debian's rule (/dev/kvm: group kvm, mode 0660). This machine has a
  # /dev/kvm (kvm-pvm, which cannot run a BIOS guest, hence TCG domains) that only root may open:
  # libvirt then probes QEMU as "KVM enabled" but re-validates it as "KVM not usable by
  # libvirt-qemu" and re-probes QEMU on EVERY API call (seconds each, minutes under load).
  if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
  start_daemon virtlogd /run/virtlogd.pid
  start_daemon libvirtd /run/libvirtd.pid
  ok=""
  for _ in $(seq 1 100); do
    if virsh -c "$uri" version >/dev/null 2>&1; then
      ok=1
      break
    fi
    sleep 0.2
  done
  if [ -z "$ok" ]; then
    echo "libvirt: virsh -c $uri does not answer" >&2
    virsh -c "$uri" version >&2 || true
    exit 1
  fi
  mkdir -p "$vmdir"
  chmod 1777 "$vmdir"
  {
    echo "LIBVIRT_DEFAULT_URI=$uri"
    echo "LIFEBOAT_TEST_VMDIR=$vmdir"
  } >"$state/libvirt.env"
  echo "libvirt: ready ($(virsh -c "$uri" version --daemon | grep -i 'running hypervisor' || true))"
  ;;
stop)
  # libvirtd first: it holds a connection to virtlogd while QEMU processes log through it.
  for d in libvirtd virtlogd; do
    f="$state/libvirt.$d.pid"
    [ -f "$f" ] || continue
    if pid=$(pid_named "$d" "$f"); then
      kill "$pid" || true
      for _ in $(seq 1 50); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
      done
      [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
      echo "libvirt: stopped $d (pid $pid)"
    fi
    rm -f "$f"
  done
  ;;
*) service_usage ;;
esac
