# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Runs wait here: one at a time per guest, a bounded pool across guests.

Two kinds of work reach a guest.  A *request* (an RPC ``introspect``) has a run id the
control plane is waiting on, so each one runs; at most ``max_queued`` wait per guest,
and :meth:`RunQueue.submit` refuses more.  A *trigger* (periodic, or from the guest) has
no id: while one is pending, later ones merge into it (``coalesced`` counts them), so a
guest that triggers in a tight loop holds at most one pending run.

Fairness: a pool thread runs one run of a guest and then puts the guest at the back of
the pool's queue, so a busy guest cannot keep a thread from the others; the pool's queue
holds at most one entry per guest.
"""

import collections
import concurrent.futures
import dataclasses
import datetime
import logging
import threading
import time

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Job:
    """One run to do.  ``probes``/``consistency`` None: the instance's policy decides."""

    instance_uuid: str
    trigger: str
    run_id: str = None
    detail: str = None
    probes: list = None
    consistency: str = None
    triggered_at: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    #: ``time.perf_counter()`` when the trigger arrived: for latency, not for display.
    triggered_clock: float = dataclasses.field(default_factory=time.perf_counter)
    coalesced: int = 0

    @property
    def is_request(self):
        return self.run_id is not None


class _GuestQueue:
    __slots__ = ('requests', 'trigger', 'scheduled')

    def __init__(self):
        self.requests = collections.deque()
        self.trigger = None
        self.scheduled = False      # in the pool's queue or running

    def pop(self):
        if self.requests:
            return self.requests.popleft()
        job, self.trigger = self.trigger, None
        return job


class RunQueue:
    """Calls ``execute(job)`` on pool threads, at most one job per guest at a time.

    ``execute`` must not raise; if it does, the error is logged and the queue goes on.
    """

    def __init__(self, execute, workers, max_queued):
        self._execute = execute
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._guests = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix='vmi-run')
        self._stopped = False

    def submit(self, job):
        """Queue ``job``; False when refused (too many requests wait for its guest)."""
        with self._lock:
            if self._stopped:
                return False
            queue = self._guests.setdefault(job.instance_uuid, _GuestQueue())
            if job.is_request:
                if len(queue.requests) >= self._max_queued:
                    return False
                queue.requests.append(job)
            elif queue.trigger is not None:
                queue.trigger.coalesced += 1 + job.coalesced
                return True
            else:
                queue.trigger = job
            if not queue.scheduled:
                queue.scheduled = True
                self._pool.submit(self._run_one, job.instance_uuid)
            return True

    def pending(self, instance_uuid):
        """How many jobs wait for a guest (not counting one that runs)."""
        with self._lock:
            queue = self._guests.get(instance_uuid)
            if queue is None:
                return 0
            return len(queue.requests) + (queue.trigger is not None)

    def forget(self, instance_uuid):
        """Drop what waits for a guest that went away; returns the dropped jobs."""
        with self._lock:
            queue = self._guests.get(instance_uuid)
            if queue is None:
                return []
            dropped = list(queue.requests) + ([queue.trigger] if queue.trigger else [])
            queue.requests.clear()
            queue.trigger = None
            if not queue.scheduled:
                del self._guests[instance_uuid]
            return dropped

    def _run_one(self, instance_uuid):
        with self._lock:
            job = self._guests[instance_uuid].pop()
        if job is not None:
            try:
                self._execute(job)
            except Exception:
                LOG.exception('run of %s failed unexpectedly', instance_uuid)
        with self._lock:
            queue = self._guests[instance_uuid]
            if (queue.requests or queue.trigger) and not self._stopped:
                self._pool.submit(self._run_one, instance_uuid)
            else:
                queue.scheduled = False
                if not (queue.requests or queue.trigger):
                    del self._guests[instance_uuid]

    def stop(self):
        """Refuse new jobs, drop the waiting ones, and wait for the running ones."""
        with self._lock:
            self._stopped = True
        self._pool.shutdown(wait=True, cancel_futures=True)
