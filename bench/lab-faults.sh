#!/usr/bin/env bash
# Wall time of each fault's recovery in the real OpenBao lab: `lab/up` once, then for each
# fault: heal, inject, `runbook exec runbooks/vault-crash.yaml` (headless, gates approved), and
# for the faults a human fixes, the operator's fix and `runbook resume RUN --approve fix-…`.
# Prints one line per fault: cause, exit code(s), HAProxy's view of vault-2, seconds.
#   Usage: bench/lab-faults.sh [RUNBOOK_BINARY]      (default: target/release/runbook)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release/runbook}
export LAB_RUN=${LAB_RUN:-$(mktemp -d /tmp/rb-lab-bench.XXXXXX)}
runs=$LAB_RUN/runs
trap '"$root/lab/down"' EXIT
t0=$(date +%s.%N); "$root/lab/up" 2>/dev/null; t1=$(date +%s.%N)
printf 'lab/up: %.1f s\n' "$(echo "$t1 - $t0" | bc)"
# shellcheck disable=SC1091
. "$LAB_RUN/env"
common=(--runs-dir "$runs" --ssh-config "$LAB_RUN/ssh_config" --progress plain
  --approve halt-traffic.disable --approve fix-storage --approve restart --approve restore-traffic.enable)
printf '%-9s %-9s %-6s %-8s %s\n' fault cause exit haproxy seconds
for fault in healthy sealed crash storage config oom listener quorum; do
  "$bin" unlock vault-vault-2 --runs-dir "$runs" >/dev/null 2>&1 || true
  "$root/lab/fault" vault-2 heal 2>/dev/null || { echo "heal failed before $fault" >&2; continue; }
  "$root/lab/fault" vault-2 "$fault" 2>/dev/null
  s=$(date +%s.%N)
  set +e
  out=$("$bin" exec "$root/runbooks/vault-crash.yaml" --inputs-file "$LAB_RUN/inputs-vault-2.yaml" --no-wait "${common[@]}" 2>&1)
  code=$?
  set -e
  cause=$(printf '%s\n' "$out" | grep -o 'triage.cause=[a-z]*' | tail -1 | cut -d= -f2)
  codes=$code
  if [ "$code" = 3 ]; then
    case "$fault" in
      config|listener) cp "$LAB_RUN/vault-2/vault.hcl.good" "$LAB_RUN/vault-2/vault.hcl" ;;
      oom) rm -f "$LAB_RUN/vault-2/limits" ;;
    esac
    set +e
    rout=$("$bin" resume last --approve "fix-$fault" "${common[@]}" 2>&1)
    rcode=$?
    codes="$code→$rcode"
    [ "$rcode" = 0 ] || printf '%s\n' "$rout" | grep -m1 -i 'error' >&2
    set -e
  fi
  e=$(date +%s.%N)
  lb=$(echo "show stat" | socat stdio "$LAB_RUN/haproxy.sock" | awk -F, '$1=="vault" && $2=="vault-2" {print $18}')
  printf '%-9s %-9s %-6s %-8s %.1f\n' "$fault" "$cause" "$codes" "$lb" "$(echo "$e - $s" | bc)"
done
