#!/bin/bash
# bash examples/plugins/hello-shell/test.sh
set -euo pipefail
here=$(dirname "$0")
got=$(echo '{"name": "Ada"}' | bash "$here/main.sh")
want='{"message": "Hello, Ada!"}'
[ "$got" = "$want" ] || { echo "FAIL: got $got, want $want" >&2; exit 1; }
echo "ok: hello-shell"
