# shellcheck shell=bash
# What every test service script (scripts/services/NAME.sh) shares; they source it. It sits one folder
# down because scripts/test.sh runs every scripts/services/*.sh as a service.

service_usage() {
  echo "usage: $0 start|stop STATE_DIR" >&2
  exit 2
}

# Sets `cmd` and `state` (created, made absolute) from the script's arguments: `start|stop STATE_DIR`.
service_args() {
  cmd="${1:-}"
  state="${2:-}"
  if [ -z "$cmd" ] || [ -z "$state" ]; then service_usage; fi
  mkdir -p "$state"
  state="$(cd "$state" && pwd)"
}

free_port() { # asks the kernel for a port nobody listens on
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# Prints the PID recorded in pid file $2 if that process is alive and its name is $1 (a recycled PID
# belonging to something else is not ours to stop).
pid_named() {
  local pid
  [ -f "$2" ] || return 1
  pid=$(cat "$2" 2>/dev/null || true)
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
  echo "$pid"
}
