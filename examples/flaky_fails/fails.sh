# description: Always exits with status 3.
# inputs: [before.yaml]
echo "about to fail" >&2
exit 3
