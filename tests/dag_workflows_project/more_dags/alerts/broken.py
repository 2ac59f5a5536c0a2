"""
type: python
description: Always fails
"""


def run(context):
    assert context["conn"] is None  # no DATABASE_URL parameter
    raise RuntimeError("the alerts task failed on purpose")
