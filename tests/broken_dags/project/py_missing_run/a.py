"""
description: defines main, not run
"""


def main(context):
    pass
