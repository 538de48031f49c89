#!/bin/bash
# Say hello: a Warden plugin in bash. The event arrives as JSON on stdin; what
# is printed on stdout is the result (parsed as JSON when it is JSON). The
# input schema allows only letters, spaces and . ' - in the name, so it can
# be embedded in JSON as is.
set -euo pipefail
event=$(cat)
name=$(printf '%s' "$event" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
printf '{"message": "Hello, %s!"}\n' "${name:-stranger}"
