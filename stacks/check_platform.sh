#!/usr/bin/env bash
# Resolve one supported line's pins for another platform, without installing, and list the pins
# that have no wheel there (built from source at install time). uv evaluates the target's markers,
# which pip's --platform does not.
#   pip install uv
#   stacks/check_platform.sh stacks/torch2.4 [aarch64-manylinux_2_28] [3.11]
set -euo pipefail
line=${1:?usage: $0 LINE_DIR [PLATFORM] [PYTHON]}; platform=${2:-aarch64-manylinux_2_28}; python=${3:-3.11}
resolve=(uv pip compile --quiet --python-version "$python" --python-platform "$platform"
         "$line/requirements.txt" "$line/requirements-npu.txt" "$line/requirements-test.txt" -c "$line/constraints.txt")
out=$(mktemp); trap 'rm -f "$out"' EXIT
"${resolve[@]}" -o "$out" || { echo "$line: does not resolve on $platform / Python $python"; exit 1; }
pins=$(grep -E '^[A-Za-z0-9_.-]+==' "$out" | cut -d= -f1)
sdists=()
# Require a wheel of every pin; each failure names one pin that has none: allow its sdist, retry.
while true; do
  wheels=()
  for pin in $pins; do [[ " ${sdists[*]-} " == *" $pin "* ]] || wheels+=(--only-binary "$pin"); done
  if message=$("${resolve[@]}" "${wheels[@]}" -o /dev/null 2>&1); then break; fi
  pin=$(grep -oE 'Because [A-Za-z0-9_.-]+==[^ ]+ has no usable wheels' <<<"$message" | head -1 | awk '{print $2}' | cut -d= -f1)
  [ -n "$pin" ] || { echo "$message" >&2; exit 1; }
  sdists+=("$pin")
done
echo "$line: $(wc -w <<<"$pins") pins resolve on $platform / Python $python; no wheel there (built at install): ${sdists[*]:-none}"
