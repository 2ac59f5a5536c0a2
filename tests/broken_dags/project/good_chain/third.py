"""
inputs: [second.sql]
"""


def run(context):
    pass
