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

"""One thread that calls back when a deadline passes: the probes' time limits.

A thread per probe (``threading.Timer``) costs about half a millisecond to start, more
than many probes take; so every time limit in the process shares this one thread.
:meth:`Watchdog.disarm` and the callback agree under the watchdog's lock: once
``disarm`` returns, the callback has run or never will.
"""

import heapq
import itertools
import logging
import threading
import time

LOG = logging.getLogger(__name__)


class Watchdog:
    """Calls ``callback()`` when an armed deadline passes, unless disarmed first."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heap = []
        self._seq = itertools.count()
        self._thread = None

    def arm(self, seconds, callback):
        """Call ``callback`` in ``seconds``; returns what :meth:`disarm` takes."""
        entry = [self._clock() + seconds, next(self._seq), callback]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='vmi-watchdog',
                                                daemon=True)
                self._thread.start()
            if self._heap[0] is entry:
                self._cond.notify()
        return entry

    def disarm(self, entry):
        with self._cond:
            entry[2] = None
            while self._heap and self._heap[0][2] is None:
                heapq.heappop(self._heap)

    def _run(self):
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                left = self._heap[0][0] - self._clock()
                if left > 0:
                    self._cond.wait(left)
                    continue
                callback = heapq.heappop(self._heap)[2]
                try:
                    callback()      # under the lock: see the module docstring
                except Exception:   # a callback's bug must not stop every time limit
                    LOG.exception('watchdog callback %r failed', callback)


#: The process's watchdog.
WATCHDOG = Watchdog()
