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

"""The periodic trigger: runs an instance's introspection every N seconds.

One thread serves every instance of the host from a heap of due times and sleeps until
the earliest one, waking early when the schedule changes.  Runs keep to their slots
(the next one is due one interval after the previous *due time*, not after the moment it
fired, so the schedule does not drift); when the agent was held up for more than an
interval, the missed slots are skipped and the instance fires once, not once per missed
slot.  It calls the same ``fire(instance_uuid, 'periodic', detail)`` as the guest trigger
sources.
"""

import heapq
import logging
import math
import threading
import time

LOG = logging.getLogger(__name__)


class PeriodicTrigger:
    """Fire each instance at its own interval.

    ``clock`` returns monotonic seconds; tests inject a fake one and drive
    :meth:`run_due` themselves instead of starting the thread.
    """

    def __init__(self, fire, clock=time.monotonic):
        self.fire = fire
        self._clock = clock
        self._cond = threading.Condition()
        self._heap = []             # (due, uuid, interval)
        self._changed = False
        self._stopping = False
        self._thread = None

    def set(self, instance_uuid, seconds):
        """Fire ``instance_uuid`` every ``seconds``, first one interval from now.

        Replaces an earlier interval of that instance.
        """
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError('interval must be a positive number of seconds, not %r'
                             % (seconds,))
        with self._cond:
            self._drop(instance_uuid)
            heapq.heappush(self._heap, (self._clock() + seconds, instance_uuid, seconds))
            self._changed = True
            self._cond.notify()

    def remove(self, instance_uuid):
        """Stop firing ``instance_uuid``; nothing happens when it was not scheduled."""
        with self._cond:
            self._drop(instance_uuid)
            self._changed = True
            self._cond.notify()

    def scheduled(self):
        """``{instance_uuid: interval}`` of every scheduled instance."""
        with self._cond:
            return {uuid: interval for _, uuid, interval in self._heap}

    def start(self):
        """Start the timer thread (once; a stopped trigger can be started again)."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name='vmi-periodic',
                                            daemon=True)
            self._thread.start()

    def stop(self):
        """Stop the thread and wait for it; idempotent.  The schedule is kept."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def run_due(self):
        """Fire every instance that is due; return seconds until the next one, or None."""
        now = self._clock()
        due_now = []
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                due, uuid, interval = heapq.heappop(self._heap)
                heapq.heappush(self._heap, (_next_slot(due, interval, now), uuid, interval))
                due_now.append((uuid, interval))
            delay = self._heap[0][0] - now if self._heap else None
        for uuid, interval in due_now:
            self._fire(uuid, interval)
        return delay

    def _run(self):
        while True:
            with self._cond:
                if self._stopping:
                    return
            try:
                delay = self.run_due()
            except Exception:
                LOG.exception('periodic trigger: unexpected error, retrying in 1 s')
                delay = 1.0
            with self._cond:
                if self._stopping:
                    return
                if not self._changed:
                    self._cond.wait(delay)
                self._changed = False

    def _fire(self, uuid, interval):
        try:
            self.fire(uuid, 'periodic', 'every %gs' % interval)
        except Exception:
            LOG.exception('periodic trigger: fire(%s) failed', uuid)

    def _drop(self, uuid):
        kept = [entry for entry in self._heap if entry[1] != uuid]
        if len(kept) != len(self._heap):
            heapq.heapify(kept)
            self._heap = kept


def _next_slot(due, interval, now):
    """The first slot after ``now`` of the schedule ``due + k * interval``."""
    nxt = due + interval
    if nxt <= now:
        nxt = due + (int((now - due) // interval) + 1) * interval
        if nxt <= now:      # float rounding
            nxt += interval
    return nxt
