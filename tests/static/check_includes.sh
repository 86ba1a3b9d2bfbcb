#!/usr/bin/env bash
# check_includes.sh — the dependency rule of the source tree (README:
# Architecture), checked over the `#include "..."` lines of the project's C
# files. Run from the top of the source tree; exits 1 on a finding.
#
# 1. A room includes only headers of itself and of the rooms it may use:
#
#      base          (nothing)
#      shm           base
#      adopt         base
#      worker        base shm adopt include
#      agent         base shm adopt include
#      agent/drivers base shm adopt agent include
#      ctl           base shm include
#      dropin        base shm adopt worker include
#
#    A header name is looked up in the including file's own folder first, then
#    in every room; a name found in two rooms is a finding (the include would
#    depend on the include path). Names found nowhere are generated headers.
# 2. No module (a .c and its .h) reaches, through includes, back to itself:
#    tsort(1) finds the cycles.
set -euo pipefail

declare -A allowed=(
  [base]=""
  [shm]="base"
  [adopt]="base"
  [worker]="base shm adopt include"
  [agent]="base shm adopt include"
  [agent/drivers]="base shm adopt agent include"
  [ctl]="base shm include"
  [dropin]="base shm adopt worker include"
  [include]=""
)
rooms=(base shm adopt worker agent agent/drivers ctl dropin include)

findings=0
finding() {
  echo "check_includes: $*" >&2
  findings=$((findings + 1))
}

# where NAME: the rooms that hold a header NAME, one a line.
where() {
  local room
  for room in "${rooms[@]}"; do
    [[ -f $room/$1 ]] && echo "$room"
  done
  return 0
}

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

for room in "${rooms[@]}"; do
  for file in "$room"/*.[ch]; do
    [[ -f $file ]] || continue
    module=${file%.[ch]}
    echo "$module $module" >>"$edges"
    while IFS= read -r name; do
      if [[ -f $room/$name ]]; then
        target=$room
      else
        mapfile -t found < <(where "$name")
        if [[ ${#found[@]} -eq 0 ]]; then
          continue
        elif [[ ${#found[@]} -gt 1 ]]; then
          finding "$file: \"$name\" is in ${found[*]}: which one depends on the include path"
          continue
        fi
        target=${found[0]}
        if [[ " ${allowed[$room]} " != *" $target "* ]]; then
          finding "$file: includes $target/$name, but $room/ may use only: ${allowed[$room]:-nothing}"
        fi
      fi
      [[ $target/${name%.h} == "$module" ]] || echo "$module $target/${name%.h}" >>"$edges"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
  done
done

if ! out=$(tsort "$edges" 2>&1 >/dev/null); then
  finding "modules that include each other (a cycle):"
  sed -n 's/^tsort: //p' <<<"$out" | grep -v 'input contains a loop' | sed 's/^/    /' >&2
fi

if [[ $findings -gt 0 ]]; then
  echo "check_includes: $findings finding(s)" >&2
  exit 1
fi
echo "check_includes: ${#rooms[@]} rooms, no forbidden include, no cycle"
