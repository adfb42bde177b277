#!/usr/bin/env bash
# Fails when an #include runs against the module arrows of DESIGN.md 2.1:
#   admin -> consensus -> zone -> base, admin -> resolver -> zone, admin -> gossip -> base,
#   admin/api -> admin/http -> base.
# admin/api is part of the admin composition root: it reads the catalog (zone) and proposes
# writes (consensus) directly; admin/http stays free of Consul and catalog knowledge.
# A module includes only another module's public header; third-party headers stay in the
# module that owns them.
set -u
cd "$(dirname "$0")/.."

declare -A ALLOW=(
  [base]="base"
  [zone]="base zone"
  [consensus]="base zone consensus"
  [resolver]="base zone resolver"
  [gossip]="base gossip"
  [admin/http]="base admin/http"
  [admin/api]="base zone consensus admin/http admin/api"
  [admin]="base zone consensus resolver gossip admin/http admin/api admin"
)
declare -A THIRD=(
  [base]=""
  [zone]="lmdb.h ldns"
  [consensus]="raft.h raft uv.h jansson.h nettle"
  [resolver]="unbound.h ldns uv.h"
  [gossip]="uv.h"
  [admin/http]="llhttp.h uv.h"
  [admin/api]="jansson.h uv.h"
  [admin]="jansson.h uv.h"
)
declare -A HEADER=(
  [base]="base/base.h" [zone]="zone/zone.h" [consensus]="consensus/consensus.h"
  [resolver]="resolver/resolver.h" [gossip]="gossip/gossip.h"
  [admin/http]="admin/http/http.h" [admin/api]="admin/api/api.h"
)
KNOWN_THIRD="lmdb.h ldns raft.h raft uv.h jansson.h unbound.h llhttp.h nettle"

fail=0
for mod in base zone consensus resolver gossip admin/http admin/api admin; do
  [ -d "$mod" ] || continue
  for f in "$mod"/*.c "$mod"/*.h; do
    [ -f "$f" ] || continue
    while IFS= read -r inc; do
      if [[ "$inc" =~ ^\"(.*)\"$ ]]; then
        path=${BASH_REMATCH[1]}
        [[ "$path" != */* ]] && continue         # same-folder private header
        target=""
        for m in admin/http admin/api base zone consensus resolver gossip admin; do
          if [[ "$path" == "$m/"* ]]; then target=$m; break; fi
        done
        [ -z "$target" ] && continue
        [ "$target" = "$mod" ] && continue
        if [[ " ${ALLOW[$mod]} " != *" $target "* ]]; then
          echo "check-deps: $f includes $path: $mod may not depend on $target"; fail=1
        elif [ "$path" != "${HEADER[$target]:-}" ]; then
          echo "check-deps: $f includes $path: only $target's public header ${HEADER[$target]:-} may be included"; fail=1
        fi
      elif [[ "$inc" =~ ^\<(.*)\>$ ]]; then
        path=${BASH_REMATCH[1]}
        top=${path%%/*}
        for t in $KNOWN_THIRD; do
          if [ "$path" = "$t" ] || [ "$top" = "$t" ]; then
            if [[ " ${THIRD[$mod]} " != *" $t "* ]]; then
              echo "check-deps: $f includes <$path>: third-party header not owned by $mod"; fail=1
            fi
          fi
        done
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*\([<"][^>"]*[>"]\).*/\1/p' "$f")
  done
done
[ $fail -eq 0 ] && echo "check-deps: ok"
exit $fail
