"""The one door to the cluster: the client (``client.py``) and its typed resources (``resources.py``).

Nothing outside this package builds a REST path or a request body; the rollout code asks
for what it needs through the small protocols in ``protocols.py``.
"""

from dsroll.kube.client import Kube, KubeOptions, WatchExpired, parse_request_timeout
from dsroll.kube.resources import FIELD_MANAGER, Collection

__all__ = ["FIELD_MANAGER", "Collection", "Kube", "KubeOptions", "WatchExpired", "parse_request_timeout"]
