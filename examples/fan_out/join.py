"""
description: Runs once all three branches succeeded.
inputs: [branch_a.sh, branch_b.sh, branch_c.sh]
"""


def run(context):
    print("all branches done")
