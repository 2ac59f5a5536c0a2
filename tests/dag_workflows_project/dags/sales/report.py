"""
type: python
description: Print the total
inputs:
  - totals.yaml
parameters:
  - DATABASE_URL
"""

from _helpers import describe


def run(context):
    cursor = context["conn"].cursor()
    cursor.execute("SELECT total FROM totals")
    print(describe(cursor.fetchone()[0]))
