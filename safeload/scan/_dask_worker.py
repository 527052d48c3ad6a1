"""What the Dask workers hold for a `scan_many` run: its policy, installed by a worker plugin.

A plugin, not a task result or scattered data: the scheduler hands it to
every worker that joins, including one restarted after its process died, and
no task depends on a result that a dying worker could take with it.
Imported only where dask.distributed is installed.
"""

from __future__ import annotations

import pickle
from typing import Any

from distributed import WorkerPlugin

from ..policy import Policy

__all__ = ["PolicyPlugin", "policy_of"]

_policies: dict[str, Policy] = {}
"""On a worker: run id -> the policy that run's files are judged by."""


class PolicyPlugin(WorkerPlugin):
    """Installs one run's policy on each worker (sent pickled, about half a megabyte, once)."""

    def __init__(self, run: str, policy: Policy) -> None:
        self.run = run
        self.policy = pickle.dumps(policy)

    def setup(self, worker: Any) -> None:
        loaded = pickle.loads(self.policy)  # the client's own Policy object
        assert isinstance(loaded, Policy)
        _policies[self.run] = loaded

    def teardown(self, worker: Any) -> None:
        _policies.pop(self.run, None)


def policy_of(run: str) -> Policy:
    """The policy of run `run` on this worker."""
    return _policies[run]
