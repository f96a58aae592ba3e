#!/usr/bin/env bash
# Keeps each manifest's `checksum/config` pod annotation equal to the sha256 of the node TOML its
# ConfigMap embeds (the `hallcast.toml: |` block, as Kubernetes will read it), so that editing the
# TOML changes the pod template and `kubectl apply` rolls the pod. Plain bash, awk and sha256sum:
# nothing to install.
#
#   deploy/kubernetes/checksum.sh            rewrite the annotations (after editing a TOML)
#   deploy/kubernetes/checksum.sh --check    exit 1 naming every manifest whose annotation is stale
#
# Each manifest (*.yaml in this folder) that embeds a TOML must hold exactly one ConfigMap key
# `hallcast.toml` and exactly one `checksum/config:` annotation.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# The block scalar under `  hallcast.toml: |`: its lines without their 4-space indentation, blank
# lines kept inside, trailing blank lines dropped and one final newline (YAML's "clip").
embedded_toml() {
  awk '
    /^  hallcast\.toml: \|$/ { inside = 1; next }
    inside && /^    / { while (blank > 0) { print ""; blank-- } print substr($0, 5); next }
    inside && /^ *$/ { blank++; next }
    inside { exit }
  ' "$1"
}

stale=0
for f in "$dir"/*.yaml; do
  n_toml="$(grep -c '^  hallcast\.toml: |$' "$f" || true)"
  [ "$n_toml" -eq 0 ] && continue
  n_sum="$(grep -c '^ *checksum/config: ' "$f" || true)"
  if [ "$n_toml" -ne 1 ] || [ "$n_sum" -ne 1 ]; then
    echo "$f: expected one hallcast.toml ConfigMap key and one checksum/config annotation, found $n_toml and $n_sum" >&2
    exit 1
  fi
  sum="$(embedded_toml "$f" | sha256sum | cut -d' ' -f1)"
  current="$(sed -n 's/^ *checksum\/config: "\([0-9a-f]*\)"$/\1/p' "$f")"
  if [ "$current" = "$sum" ]; then
    continue
  fi
  if [ "$check" -eq 1 ]; then
    echo "$f: checksum/config is \"$current\", the embedded hallcast.toml's sha256 is $sum (run deploy/kubernetes/checksum.sh)" >&2
    stale=1
  else
    sed -i "s/^\( *checksum\/config: \).*$/\1\"$sum\"/" "$f"
    echo "$f: checksum/config = $sum"
  fi
done
exit "$stale"
