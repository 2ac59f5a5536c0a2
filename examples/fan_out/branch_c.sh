# description: Branch c, runs after start.yaml.
# inputs: [start.yaml]
echo "branch c"
