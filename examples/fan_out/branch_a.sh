# description: Branch a, runs after start.yaml.
# inputs: [start.yaml]
echo "branch a"
