#!/bin/sh
# The system programs DVC Hub needs, found or installed before anything else runs (`make setup`, and so
# `make demo` and `make test`, start with this script; so does CI):
#   python3 3.11+ with venv   the virtual environment (Debian: python3-venv)
#   java 17+                   the embedded Kafka 4 broker ($JAVA_HOME/bin/java first, as Kafka's scripts do)
#   mvn                        fetches the pinned Kafka jars from Maven Central, once
#   prometheus, promtool       the Prometheus that `dvc-hub up` and the tests start; rule and alert tests
# As root on a Debian/Ubuntu machine it installs what is missing with apt-get (one `apt-get update`
# first); otherwise it prints the one command to run and exits 1. Nothing missing: it changes nothing.
#
# Debian's prometheus package starts a system daemon on :9090 where an init system runs it: the hub
# starts its own Prometheus (`dvc-hub up` on [prometheus] port, 9090 by default; the tests on free ports),
# so a daemon this script's install started is stopped and disabled again at once.
set -eu

PYTHON=${PYTHON:-python3}
MIN_JAVA=17

say() { printf 'system-deps: %s\n' "$*"; }

# ---------------------------------------------------------------- what is missing
pkgs=""
problems=""
add() { case " $pkgs " in *" $1 "*) ;; *) pkgs="${pkgs:+$pkgs }$1" ;; esac; }
problem() { problems="${problems}  - $*
"; }

# Python: 3.11+, with the venv module and ensurepip (Debian ships both only in python3-venv).
python_path=$(command -v "$PYTHON" 2>/dev/null || true)
if [ -z "$python_path" ]; then
  if [ "$PYTHON" = python3 ]; then add python3; add python3-venv; else problem "$PYTHON not found (make PYTHON=...)"; fi
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  problem "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'); 3.11+ is required: install python3.11 and run make PYTHON=python3.11 ..."
elif ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  case $(readlink -f "$python_path") in
    /usr/bin/python3*) add python3-venv ;;
    *) problem "$PYTHON ($python_path) has no venv/ensurepip module: install a complete Python 3.11+" ;;
  esac
fi

# Java 17+, the one the broker will use: $JAVA_HOME/bin/java, else java on PATH.
java_major() {
  "$1" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\)\(\.\([0-9][0-9]*\)\)\{0,1\}.*/\1 \3/p' | head -n 1 |
    { read -r major minor || true; if [ "${major:-0}" = 1 ]; then echo "${minor:-0}"; else echo "${major:-0}"; fi; }
}
java_ok() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then java=$JAVA_HOME/bin/java; else java=$(command -v java 2>/dev/null || true); fi
  [ -n "$java" ] && [ "$(java_major "$java")" -ge "$MIN_JAVA" ]
}
java_ok || add JRE
command -v mvn >/dev/null 2>&1 || add maven
prometheus_ok() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }
prometheus_ok || add prometheus

# A Debian prometheus daemon that runs already (installed before, outside this script) holds :9090, where
# `dvc-hub up` starts the hub's own Prometheus; the tests use free ports and do not mind. Said, not stopped:
# it is the machine owner's service.
debian_prometheus_running() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl is-active --quiet prometheus.service 2>/dev/null
  else
    [ -r /run/prometheus/prometheus.pid ] && kill -0 "$(cat /run/prometheus/prometheus.pid)" 2>/dev/null
  fi
}
if prometheus_ok && debian_prometheus_running; then
  say "note: Debian's prometheus service is running on :9090, the port \`make demo\` gives the hub's own Prometheus ([prometheus] port). Stop it for the demo: systemctl disable --now prometheus (without systemd: service prometheus stop)." >&2
fi

if [ -n "$problems" ]; then
  printf 'system-deps: cannot continue:\n%s' "$problems" >&2
  exit 1
fi
[ -z "$pkgs" ] && exit 0

# ---------------------------------------------------------------- install it
# A JRE of 17 or newer: Debian 12 has openjdk-17, Debian 13 only openjdk-21 and newer; the first one the
# archive offers is taken (needs the package lists, hence after `apt-get update`).
pick_jre() {
  for candidate in openjdk-17-jre-headless openjdk-21-jre-headless openjdk-25-jre-headless; do
    if apt-cache policy "$candidate" 2>/dev/null | grep -q 'Candidate: [0-9]'; then echo "$candidate"; return; fi
  done
  echo openjdk-17-jre-headless
}

if ! command -v apt-get >/dev/null 2>&1; then
  say "missing: ${pkgs} (Debian package names; JRE = a Java ${MIN_JAVA}+ runtime). Install them with your system's package manager, then run make again." >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  shown=$(echo "$pkgs" | sed 's/\bJRE\b/openjdk-17-jre-headless/')
  say "missing system packages: ${shown}. Install them as root, then run make again:" >&2
  printf '\n    sudo sh -c "apt-get update && apt-get install -y --no-install-recommends %s"\n\n' "$shown" >&2
  say "(on Debian 13 and newer, take openjdk-21-jre-headless instead of openjdk-17-jre-headless)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
say "installing what is missing: ${pkgs} (apt-get update first)"
apt-get update -qq
pkgs=$(echo "$pkgs" | sed "s/\bJRE\b/$(pick_jre)/")
say "apt-get install -y --no-install-recommends ${pkgs}"
# --reinstall: a package dpkg counts as installed whose program is gone (deleted, or a half-removed
# package) is a no-op for a plain install, and set-up would stop with "still missing".
apt-get install -y -qq --reinstall --no-install-recommends $pkgs >/dev/null

case " $pkgs " in *" prometheus "*)
  # The package's postinst starts prometheus.service where an init system runs; that daemon would hold
  # :9090, the port `dvc-hub up` gives its own Prometheus. Stop it and keep it from starting at boot.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  say "Debian's prometheus service is left stopped and disabled: the hub and its tests run their own" ;;
esac

# ---------------------------------------------------------------- check again
failed=""
if ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then failed="$failed python3-venv"; fi
java_ok || failed="$failed java-${MIN_JAVA}+"
command -v mvn >/dev/null 2>&1 || failed="$failed mvn"
prometheus_ok || failed="$failed prometheus/promtool"
if [ -n "$failed" ]; then
  say "still missing after apt-get install:${failed}" >&2
  exit 1
fi
say "installed: ${pkgs}"
