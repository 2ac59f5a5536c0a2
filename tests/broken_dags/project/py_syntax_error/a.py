"""
description: broken
"""


def run(context)
    pass
