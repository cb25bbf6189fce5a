#!/usr/bin/env bash
# Ceph RGW for the S3 tests: a one-node Ceph cluster (one monitor, one memstore OSD, no cephx) plus
# radosgw on 127.0.0.1, everything (config, data, logs, sockets, PIDs) under STATE_DIR/rgw.
#
#   rgw.sh start STATE_DIR   # idempotent; writes STATE_DIR/rgw.env
#   rgw.sh stop STATE_DIR    # stops the daemons it started, by PID
#
# rgw.env holds LIFEBOAT_TEST_S3_ENDPOINT, LIFEBOAT_TEST_S3_ACCESS_KEY, LIFEBOAT_TEST_S3_SECRET_KEY and
# LIFEBOAT_TEST_S3_REGION. memstore keeps every object in RAM (up to 4 GiB, allocated as used), so the
# cluster is throwaway by design.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
service_args "$@"
dir="$state/rgw"
conf="$dir/ceph.conf"
envfile="$state/rgw.env"
names=(client.rgw osd.0 mon.a)

pid_alive() { # pidfile -> 0 when the process in it runs
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop() {
  # memstore data dies with the OSD anyway, so all daemons get SIGTERM at once; stragglers get SIGKILL.
  local pids=()
  for n in "${names[@]}"; do
    local pf="$dir/run/$n.pid"
    if pid_alive "$pf"; then
      pids+=("$(cat "$pf")")
      kill "$(cat "$pf")" 2>/dev/null || true
    fi
    rm -f "$pf"
  done
  for _ in $(seq 1 20); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -f "$envfile"
}

wait_for() { # description, seconds, command...
  local what="$1" secs="$2"
  shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "rgw.sh: timed out waiting for $what (logs in $dir/log)" >&2
  return 1
}

start() {
  if pid_alive "$dir/run/client.rgw.pid" && pid_alive "$dir/run/osd.0.pid" && pid_alive "$dir/run/mon.a.pid" &&
    [ -f "$envfile" ]; then
    echo "rgw.sh: already running ($(grep ENDPOINT "$envfile"))"
    return 0
  fi
  # A half-started or crashed cluster is rebuilt from nothing: memstore data did not survive anyway.
  stop
  rm -rf "$dir"
  mkdir -p "$dir/run" "$dir/log" "$dir/mon/a" "$dir/osd/0" "$dir/rgw"

  local fsid mon_port rgw_port access secret
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  mon_port="$(free_port)"
  rgw_port="$(free_port)"
  access="LBTEST$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-z A-Z)"
  secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
keyring = $dir/keyring
mon data = $dir/mon/\$id
osd data = $dir/osd/\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon osd nearfull ratio = .96
mon osd backfillfull ratio = .97
mon osd full ratio = .98
osd failsafe full ratio = .99
mon data avail warn = 2
mon data avail crit = 1
erasure code dir = /usr/lib/x86_64-linux-gnu/ceph/erasure-code
osd class dir = /usr/lib/x86_64-linux-gnu/rados-classes
crash dir = $dir/crash

[client.rgw]
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
rgw enable usage log = false
EOF

  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
  ceph-mon -c "$conf" -i a
  wait_for "ceph-mon" 30 ceph -c "$conf" --connect-timeout 2 mon stat

  local osd_uuid
  osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
  ceph -c "$conf" osd new "$osd_uuid" >/dev/null
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
  ceph-osd -c "$conf" -i 0 2>>"$dir/log/osd.0.stderr"
  wait_for "ceph-osd" 60 bash -c "ceph -c '$conf' osd stat -f json | grep -q '\"num_up_osds\":1'"

  radosgw -c "$conf" -n client.rgw
  wait_for "radosgw" 60 curl -sf "http://127.0.0.1:$rgw_port/"

  radosgw-admin -c "$conf" user create --uid lifeboat-test --display-name "Lifeboat tests" \
    --access-key "$access" --secret-key "$secret" >/dev/null 2>&1

  cat >"$envfile" <<EOF
LIFEBOAT_TEST_S3_ENDPOINT=http://127.0.0.1:$rgw_port
LIFEBOAT_TEST_S3_ACCESS_KEY=$access
LIFEBOAT_TEST_S3_SECRET_KEY=$secret
LIFEBOAT_TEST_S3_REGION=default
EOF
  echo "rgw.sh: radosgw on http://127.0.0.1:$rgw_port"
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) service_usage ;;
esac
