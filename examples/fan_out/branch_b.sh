# description: Branch b, runs after start.yaml.
# inputs: [start.yaml]
echo "branch b"
