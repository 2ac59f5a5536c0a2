"""The kubernetes task manager: one pod per attempt.

``manager`` holds :class:`KubernetesTaskManager` (the reconcile pass), ``pods``
the pure pod logic (options, names, the manifest, reading a pod's status) and
``backend`` the few API calls, behind a Protocol. The Kubernetes client is
imported only when the manager first talks to a cluster.
"""

from __future__ import annotations

from workflows_tick.managers.kubernetes.manager import KubernetesTaskManager

__all__ = ["KubernetesTaskManager"]
