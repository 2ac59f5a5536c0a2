import os

from workflows import dags, hooks

DAGS = dags.register_directory(os.path.join(os.path.dirname(__file__), "dags"))
DAGS.update(dags.register_directory(os.path.join(os.path.dirname(__file__), "more_dags")))
DAGS.worker_config = {
    "kube_image": "example.org/sales:1",
    "kube_namespace": "sales",
    "kube_security_context": {"runAsUser": 1000, "fsGroup": 2000},
}
DAGS.register_hook(
    hooks.make_slack_notification_hook(
        os.environ.get("SLACK_WEBHOOK", "http://127.0.0.1:9/unused"),
        "Task {dag}:{task} failed with exception: {exception}",
    )
)
