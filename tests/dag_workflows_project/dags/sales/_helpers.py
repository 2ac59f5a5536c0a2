"""Shared code for the sales tasks."""


def describe(total):
    return f"sales total: {total}"
