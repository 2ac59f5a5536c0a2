"""
description: Greet whoever GREETING_NAME names.
parameters: [GREETING_NAME]
"""


def run(context):
    print(f"hello, {context['GREETING_NAME']}!")
