#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the benchmarks need.
# Safe to run twice: it does nothing when everything is present. Uses sudo when not root.
#
# libraft must be >= 0.17 (DESIGN.md 2.6): bookworm's own 0.15.0 can lose committed data.
# On bookworm we add a bookworm-backports suite built from this machine's own Debian apt
# entry (its URIs and Signed-By), so no mirror host is written into the repository.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang-format clang libclang-rt-14-dev
  libuv1-dev liblmdb-dev libjansson-dev libldns-dev libunbound-dev libcmocka-dev node-llhttp
  python3-pytest python3-requests python3-consul python3-dnspython
  dnsutils knot-dnsutils curl lmdb-utils wrk procps
)
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
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_raft -eq 1 ]; then
  if [ "$codename" = bookworm ]; then
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports libraft-dev >/dev/null
  else
    $SUDO apt-get install -y -qq --no-install-recommends libraft-dev >/dev/null
  fi
  raft_ok || { echo "deps: libraft-dev >= $RAFT_MIN is not available" >&2; exit 1; }
fi
