#!/usr/bin/env bash
# description: Print a greeting from bash.
# inputs: [begin.yaml]
# timeout: 30
set -euo pipefail
echo "hello from $(basename "$0")"
