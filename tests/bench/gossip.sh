#!/usr/bin/env bash
# Gossip: our engine against Debian's serf (issue 11, "Measured"), same N, same machine, one
# pool at a time: tests/bench/gossip.py does the work (its docstring says how each figure is
# taken); this builds gossip_node (release) and runs it at N=10 and N=100.
#
# usage: tests/bench/gossip.sh [--quick] [--n "10 100"] [--rounds R] [-- gossip.py args...]
#   --quick   one kill round per N, 20 s of loss (about 12 minutes); the full run (3 rounds at
#             N=10, 2 at N=100, 60 s of loss) takes about 35 minutes
# Root (network namespaces, nftables), serf (Debian's package), nft, ip.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NS="10 100"
QUICK=0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --n) NS=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
    esac
    shift
done
for tool in serf nft ip; do
    command -v "$tool" >/dev/null || die "$tool missing (scripts/deps.sh installs it)"
done
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
log "building build/tests/tools/gossip_node"
make -C "$ROOT" -j2 build/tests/tools/gossip_node >/dev/null
for n in $NS; do
    if [ "$QUICK" = 1 ]; then
        args=(--rounds 1 --loss 20)
    elif [ "$n" -ge 50 ]; then
        args=(--rounds 2 --loss 60)
    else
        args=(--rounds 3 --loss 60)
    fi
    log "N=$n: ${args[*]} ${EXTRA[*]:-}"
    $PY "$BENCH/gossip.py" --n "$n" "${args[@]}" "${EXTRA[@]}"
done
