"""dag-workflows' ``workflows.hooks``: ``make_slack_notification_hook`` and the events."""

from workflows_tick.hooks import Event, Hook, make_slack_notification_hook

__all__ = ["Event", "Hook", "make_slack_notification_hook"]
