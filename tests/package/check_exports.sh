#!/usr/bin/env bash
# tests/package/check_exports.sh — libforkpool exports its public API and
# nothing else.
#
#   check_exports.sh LIBFORKPOOL.so FORKPOOL.H
#
# Passes when the dynamic symbols that the library defines (nm -D
# --defined-only) are exactly the functions that forkpool.h declares with
# FORKPOOL_EXPORT, each with a FORKPOOL_* symbol version, plus the version
# nodes themselves.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 LIBFORKPOOL.so FORKPOOL.H" >&2
  exit 2
fi
lib=$1 header=$2
status=0

# "ADDRESS TYPE NAME[@[@]VERSION]"; a version node is an absolute (A) symbol.
exported=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sort)
nodes=$(nm -D --defined-only "$lib" | awk '$2 == "A" { print $3 }' | sort)
if [[ -z $exported ]]; then
  echo "$lib: exports nothing" >&2
  exit 1
fi

while IFS= read -r sym; do
  name=${sym%%@*}
  version=${sym#"$name"}
  version=${version##*@}
  if [[ $name != forkpool_* ]]; then
    echo "$lib: exports $sym, which is not part of the public API (forkpool_*)" >&2
    status=1
  elif [[ $version != FORKPOOL_* ]]; then
    echo "$lib: exports $sym without a FORKPOOL_* symbol version" >&2
    status=1
  fi
done <<<"$exported"

while IFS= read -r node; do
  [[ -z $node || $node == FORKPOOL_* ]] && continue
  echo "$lib: defines the foreign version node $node" >&2
  status=1
done <<<"$nodes"

# The header's FORKPOOL_EXPORT declarations and the exports are the same set.
declared=$(sed -n 's/^FORKPOOL_EXPORT.*[^a-z_]\(forkpool_[a-z_]*\)(.*/\1/p' "$header" | sort -u)
names=$(cut -d@ -f1 <<<"$exported" | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$names"))
extra=$(comm -13 <(echo "$declared") <(echo "$names"))
if [[ -n $missing ]]; then
  echo "$lib: declared in $(basename "$header") but not exported: ${missing//$'\n'/ }" >&2
  status=1
fi
if [[ -n $extra ]]; then
  echo "$lib: exported but not declared in $(basename "$header"): ${extra//$'\n'/ }" >&2
  status=1
fi

if [[ $status -eq 0 ]]; then
  echo "$lib: exports exactly the $(wc -l <<<"$names") functions of $(basename "$header")" \
       "(versions: ${nodes//$'\n'/ })"
fi
exit "$status"
