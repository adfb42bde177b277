#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the benchmarks need.
# Safe to run twice: it does nothing when everything is present. Uses sudo when not root.
#
# libraft must be >= 0.17 (DESIGN.md 2.6): bookworm's own 0.15.0 can lose committed data.
# On bookworm we add a bookworm-backports suite built from this machine's own Debian apt
# entry (its URIs and Signed-By), so no mirror host is written into the repository.
#
# DNS peers for the tests (dnsmasq, BIND, unbound, NSD): the tests start their own instances on
# loopback addresses and ports, so nothing here needs the system's instances stopped, and a
# resolver the user already runs (their laptop's unbound) keeps running. The install runs under
# a policy-rc.d that forbids starting services (kept when the machine already has one, removed
# afterwards when we wrote it); a daemon the install started anyway is stopped by its pid.
# dnsmasq comes as dnsmasq-base: the binary without the system service.
#
# The container test (tests/integration/test_podman.py) runs rootful podman with runc and
# cgroupfs on podman's default bridge: CNI's plugins make the bridge and call iptables for its
# NAT rules; busybox-static goes into the test's image (no registry is reachable). podman's
# own units (podman.socket, podman-restart) are not started by the install (policy-rc.d below)
# and the test needs none of them.
#
# Patroni (tests/integration/test_patroni.py) runs its own PostgreSQL members in the test's own
# directories on loopback addresses and port 5433: a PostgreSQL the machine already runs (or the
# cluster `main` on 5432 that Debian's postgresql package makes) is left alone, neither stopped
# nor disabled; the install itself starts no service (policy-rc.d below).
set -euo pipefail

# What building needs (libunbound's pkg-config file requires libevent's and nettle's; consensus/
# uses nettle's HMAC-SHA256 for the server port's handshake; gossip/ uses msgpack-c and nettle's
# AES-GCM). Debian's serf (0.9.x) is the gossip peer of the interoperability tests.
BUILD_PKGS=(
  build-essential pkg-config
  libuv1-dev liblmdb-dev libjansson-dev libldns-dev libunbound-dev libevent-dev nettle-dev
  node-llhttp libmsgpack-dev
)
PKGS=(
  "${BUILD_PKGS[@]}" clang-format clang libclang-rt-14-dev libcmocka-dev
  python3-pytest python3-requests python3-consul python3-dnspython
  dnsutils knot-dnsutils curl lmdb-utils wrk procps
  dnsmasq-base bind9 unbound nsd ldnsutils iproute2 nftables dnsperf dns-root-data
  serf
  podman runc containernetworking-plugins iptables busybox-static
  patroni postgresql
)
# HERALD_DEPS=build installs only the build's packages (the Dockerfile's build stage).
if [ "${HERALD_DEPS:-all}" = build ]; then
  PKGS=("${BUILD_PKGS[@]}")
fi
RAFT_MIN=0.17

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

raft_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null) || return 1
  [ -n "$v" ] && dpkg --compare-versions "$v" ge "$RAFT_MIN"
}

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

# Writes a deb822 entry for <codename>-backports from the machine's own Debian entry.
add_backports() {
  local out=/etc/apt/sources.list.d/herald-${codename}-backports.sources
  [ -f "$out" ] && return 0
  local uri="" signed=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # First stanza whose Suites name our codename (not -security).
    uri=$(awk -v c="$codename" '
      /^URIs:/ {u=$2} /^Signed-By:/ {s=$2}
      /^Suites:/ { for (i=2;i<=NF;i++) if ($i==c) hit=1 }
      /^$/ { if (hit && !done) {print u; done=1} hit=0 }
      END { if (hit && !done) print u }' /etc/apt/sources.list.d/debian.sources)
    signed=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk -v c="$codename" '$1=="deb" && $3==c {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "deps: cannot find this machine's Debian apt entry for $codename" >&2
    exit 1
  fi
  {
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: ${codename}-backports"
    echo "Components: main"
    [ -n "$signed" ] && echo "Signed-By: $signed"
  } | $SUDO tee "$out" >/dev/null
  echo "deps: added ${codename}-backports from the machine's own Debian entry"
}

need_raft=0
raft_ok || need_raft=1

if [ ${#missing[@]} -eq 0 ] && [ $need_raft -eq 0 ]; then
  exit 0
fi

if [ $need_raft -eq 1 ] && [ "$codename" = bookworm ]; then
  add_backports
fi
POLICY=/usr/sbin/policy-rc.d
wrote_policy=0
cleanup_policy() {
  if [ $wrote_policy -eq 1 ]; then $SUDO rm -f "$POLICY"; fi
}
trap cleanup_policy EXIT
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# written by herald scripts/deps.sh during apt-get install\nexit 101\n' |
    $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  wrote_policy=1
fi

# The DNS daemons these packages would run, by the pid files their Debian services write. A
# daemon that already runs is the user's and is never touched. One that the install itself
# started (a machine whose policy-rc.d lets packages start services) is stopped by its pid,
# and only that one: nothing is disabled, nothing the user started is stopped.
DAEMON_PIDFILES=(/run/named/named.pid /run/unbound.pid /run/nsd/nsd.pid /run/dnsmasq/dnsmasq.pid)
running_pids() {
  local f pid
  for f in "${DAEMON_PIDFILES[@]}"; do
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then echo "$pid"; fi
  done
}
before=" $(running_pids | tr '\n' ' ') "

$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for pid in $(running_pids); do
    case "$before" in
      *" $pid "*) ;; # running before we installed anything: the user's
      *) echo "deps: stopping pid $pid, started by the package install"
         $SUDO kill "$pid" 2>/dev/null || true ;;
    esac
  done
fi
if [ $need_raft -eq 1 ]; then
  if [ "$codename" = bookworm ]; then
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports libraft-dev >/dev/null
  else
    $SUDO apt-get install -y -qq --no-install-recommends libraft-dev >/dev/null
  fi
  raft_ok || { echo "deps: libraft-dev >= $RAFT_MIN is not available" >&2; exit 1; }
fi
