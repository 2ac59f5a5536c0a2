"""
description: Count the words of a sentence, with a helper module from this folder.
inputs: [say_hello.sh]
"""

from _text import word_count


def run(context):
    print(f"the sentence has {word_count('the quick brown fox')} words")
