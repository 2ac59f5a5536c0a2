"""
description: async
"""


async def run(context):
    pass
