"""run_async with a Dask cluster's executor: what its docstring says about identical calls.

``Client.get_executor()`` submits with ``pure=True`` by default: Dask takes the call for a pure
function and runs identical ones (same function, same arguments) once, sharing the result.
With ``get_executor(pure=False)`` every call runs. The cluster is a local one in this process
(``processes=False``), so the calls can be counted here.
"""

from __future__ import annotations

import threading

from twisted.internet import defer

from evasync import run_async

from .test_run_async import _RealReactorTest

CALLS: list[int] = []
#: Holds every call until all of them have been submitted, so they are concurrent.
GATE = threading.Event()


def double(number: int) -> int:
    CALLS.append(number)
    GATE.wait(30)
    return 2 * number


class TestDaskExecutor(_RealReactorTest):

    timeout = 120

    @classmethod
    def setUpClass(cls) -> None:
        from dask.distributed import Client, LocalCluster

        cls.cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                   dashboard_address=None)
        cls.client = Client(cls.cluster)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()
        cls.cluster.close()

    def setUp(self) -> None:
        super().setUp()
        CALLS.clear()
        GATE.clear()
        self.addCleanup(GATE.set)

    @defer.inlineCallbacks
    def five_identical_calls(self, executor) -> defer.Deferred:
        calls = [run_async(double, 21, executor=executor) for _ in range(5)]
        GATE.set()
        results = yield defer.gatherResults(calls)
        return results

    @defer.inlineCallbacks
    def test_identical_calls_run_once_by_default(self):
        results = yield self.five_identical_calls(self.client.get_executor())
        self.assertEqual(results, [42] * 5)
        self.assertEqual(CALLS, [21])

    @defer.inlineCallbacks
    def test_every_call_runs_with_pure_false(self):
        results = yield self.five_identical_calls(self.client.get_executor(pure=False))
        self.assertEqual(results, [42] * 5)
        self.assertEqual(CALLS, [21] * 5)
