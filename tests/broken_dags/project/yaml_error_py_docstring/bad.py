"""
description: fine
inputs: {a: [b}
"""


def run(context):
    pass
