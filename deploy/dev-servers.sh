#!/usr/bin/env bash
# shellcheck disable=SC2317  # the per-server functions are called indirectly, by dispatch()
# Starts, stops and reports the local servers a developer runs Sluice against.
#
#   deploy/dev-servers.sh start|stop|status [SERVER...]      SERVER: redis kafka (default: all)
#
# Each server listens on 127.0.0.1 only and keeps its data, log and pid file under
# <repo>/.cache/dev-servers/<server>/. Ports: SLUICE_REDIS_PORT (default 6379),
# SLUICE_KAFKA_PORT (default 9092) and SLUICE_KAFKA_CONTROLLER_PORT (default 9093).
# Kafka is a single-node KRaft broker from deploy/kafka/ (jars from Maven Central, fetched once
# by deploy/kafka/fetch-jars.sh; needs java 17+ and, for that first fetch, mvn).
# The tests do not use these servers: they start their own on private ports.
#
# Adding a server (postgres, kafka): write <name>_start, <name>_stop and <name>_status below and
# add <name> to ALL_SERVERS; dispatch() needs no change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$ROOT/.cache/dev-servers"
ALL_SERVERS=(redis kafka)

die() { echo "dev-servers: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH; run deploy/bootstrap.sh as root"; }

# wait_until SECONDS DESCRIPTION CMD...: polls CMD every 0.1 s until it succeeds or time runs out.
wait_until() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "dev-servers: timed out after ${limit}s waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { if [ -f "$1" ]; then cat "$1" 2>/dev/null || true; fi; }

# ---- redis -------------------------------------------------------------------------------------
REDIS_PORT="${SLUICE_REDIS_PORT:-6379}"
REDIS_DIR="$BASE/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

redis_start() {
  need redis-server; need redis-cli
  local pid; pid="$(read_pid "$REDIS_PIDFILE")"
  if pid_alive "$pid" && redis_ping; then
    echo "redis: already running on 127.0.0.1:$REDIS_PORT (pid $pid)"; return 0
  fi
  if redis_ping; then
    die "redis: port $REDIS_PORT already answers PING but is not ours (pid file $REDIS_PIDFILE); set SLUICE_REDIS_PORT"
  fi
  mkdir -p "$REDIS_DIR"
  rm -f "$REDIS_PIDFILE"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$REDIS_DIR" --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_DIR/redis.log" \
    || die "redis: redis-server failed to start; see $REDIS_DIR/redis.log"
  if ! wait_until 20 "redis on 127.0.0.1:$REDIS_PORT to answer PING" redis_ping; then
    tail -n 20 "$REDIS_DIR/redis.log" >&2 || true
    die "redis: did not come up"
  fi
  echo "redis: running on 127.0.0.1:$REDIS_PORT (pid $(read_pid "$REDIS_PIDFILE")), data in $REDIS_DIR"
  echo "       SLUICE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

redis_stop() {
  local pid; pid="$(read_pid "$REDIS_PIDFILE")"
  if ! pid_alive "$pid"; then
    echo "redis: not running"; rm -f "$REDIS_PIDFILE"; return 0
  fi
  kill -TERM "$pid"
  wait_until 30 "redis (pid $pid) to exit" bash -c "! kill -0 $pid" || die "redis: pid $pid did not exit"
  rm -f "$REDIS_PIDFILE"
  echo "redis: stopped"
}

# Exit status like LSB: 0 running, 3 not running.
redis_status() {
  local pid; pid="$(read_pid "$REDIS_PIDFILE")"
  if pid_alive "$pid" && redis_ping; then
    echo "redis: running on 127.0.0.1:$REDIS_PORT (pid $pid)"; return 0
  fi
  echo "redis: not running"; return 3
}

# ---- kafka -------------------------------------------------------------------------------------
KAFKA_PORT="${SLUICE_KAFKA_PORT:-9092}"
KAFKA_CPORT="${SLUICE_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DIR="$BASE/kafka"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_SH="$ROOT/deploy/kafka/start-kafka.sh"

kafka_ready() { bash "$KAFKA_SH" --check "127.0.0.1:$KAFKA_PORT"; }

kafka_start() {
  need java
  local pid; pid="$(read_pid "$KAFKA_PIDFILE")"
  if pid_alive "$pid" && kafka_ready; then
    echo "kafka: already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"; return 0
  fi
  if kafka_ready; then
    die "kafka: port $KAFKA_PORT already serves Kafka but not from $KAFKA_DIR; set SLUICE_KAFKA_PORT"
  fi
  if pid_alive "$pid"; then
    die "kafka: pid $pid (from $KAFKA_PIDFILE) runs but does not serve metadata on $KAFKA_PORT; see $KAFKA_DIR/kafka.log, or stop it"
  fi
  rm -f "$KAFKA_PIDFILE"
  local jars
  jars="$(bash "$ROOT/deploy/kafka/fetch-jars.sh" | tail -n 1)" || die "kafka: deploy/kafka/fetch-jars.sh failed"
  # Formats $KAFKA_DIR/data on the first start only, so topics survive restarts; waits (with a
  # deadline) until the broker serves metadata.
  SLUICE_KAFKA_JARS="$jars" bash "$KAFKA_SH" --dir "$KAFKA_DIR" --port "$KAFKA_PORT" \
    --controller-port "$KAFKA_CPORT" --background --timeout 120 >/dev/null \
    || die "kafka: did not come up; see $KAFKA_DIR/kafka.log"
  echo "kafka: running on 127.0.0.1:$KAFKA_PORT (pid $(read_pid "$KAFKA_PIDFILE")), data in $KAFKA_DIR/data"
  echo "       SLUICE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
}

kafka_stop() {
  local pid; pid="$(read_pid "$KAFKA_PIDFILE")"
  if ! pid_alive "$pid"; then
    echo "kafka: not running"; rm -f "$KAFKA_PIDFILE"; return 0
  fi
  kill -TERM "$pid"
  # A controlled shutdown takes a few seconds.
  wait_until 60 "kafka (pid $pid) to exit" bash -c "! kill -0 $pid" || die "kafka: pid $pid did not exit"
  rm -f "$KAFKA_PIDFILE"
  echo "kafka: stopped"
}

kafka_status() {
  local pid; pid="$(read_pid "$KAFKA_PIDFILE")"
  if pid_alive "$pid" && kafka_ready; then
    echo "kafka: running on 127.0.0.1:$KAFKA_PORT (pid $pid)"; return 0
  fi
  if pid_alive "$pid"; then
    echo "kafka: pid $pid runs but does not serve metadata on 127.0.0.1:$KAFKA_PORT (starting, or broken: $KAFKA_DIR/kafka.log)"; return 3
  fi
  echo "kafka: not running"; return 3
}

# ---- dispatch ----------------------------------------------------------------------------------
dispatch() {
  local action=$1 server=$2
  case "$server" in
    redis) "redis_$action" ;;
    kafka) "kafka_$action" ;;
    # postgres) "postgres_$action" ;;   (later issue)
    *) die "unknown server '$server' (known: ${ALL_SERVERS[*]})" ;;
  esac
}

usage() { echo "usage: $0 start|stop|status [${ALL_SERVERS[*]}]..." >&2; exit 2; }

[ $# -ge 1 ] || usage
action=$1; shift
case "$action" in start|stop|status) ;; *) usage ;; esac
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=("${ALL_SERVERS[@]}")

rc=0
for s in "${servers[@]}"; do
  if [ "$action" = status ]; then
    dispatch status "$s" || rc=$?
  else
    dispatch "$action" "$s"
  fi
done
exit "$rc"
