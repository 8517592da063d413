#!/bin/bash
# shell.sh: an interactive root shell in a kernel lab guest (Debian's kernel with IPVS, the
# host's root as a writable overlay), for debugging what a test sees in the guest.
#
#   bash lab/kernel/shell.sh        # from anywhere in the repository; needs root
#
# It prepares the cache like the tests do (the first time: downloads the kernel package).
# Leave with `exit` or Ctrl-A X. FULCRUM_LAB_DEBUG=1 shows the whole kernel log while booting.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOFLAGS="${GOFLAGS:--mod=mod}"
exec go run ./lab/kernel/internal/labshell
