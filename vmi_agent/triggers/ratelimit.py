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

"""A token bucket: how often one instance's triggers may start a run.

A guest decides when its own trigger fires, and a hostile or broken guest can fire
thousands of times a second; the periodic timer and the API add their own requests.  The
agent keeps one bucket per instance and starts a run only when the bucket allows it, so an
instance costs the host at most ``rate`` runs a second on average, with short bursts of up
to ``burst`` runs.  The instance's policy can change its rate while the bucket is in use.
"""

import math
import threading
import time

# Tokens are floats: refilling by ``elapsed * rate`` can land a hair below a whole token.
_EPSILON = 1e-9


class TokenBucket:
    """Allow on average ``rate`` events a second, at most ``burst`` in a row.

    The bucket starts full.  ``burst`` defaults to ``max(1, rate)`` and then follows the
    rate when it changes; an explicit ``burst`` stays.  A rate of 0 allows only what is
    left in the bucket.  ``clock`` returns seconds (injected by tests).  Thread-safe.
    """

    def __init__(self, rate, burst=None, clock=time.monotonic):
        _check_rate(rate)
        if burst is not None and not (math.isfinite(burst) and burst >= 1):
            raise ValueError('burst must be at least 1, not %r' % (burst,))
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = rate
        self._fixed_burst = burst
        self._burst = _burst_for(rate, burst)
        self._tokens = float(self._burst)
        self._last = clock()

    @property
    def rate(self):
        """Tokens added per second."""
        return self._rate

    @rate.setter
    def rate(self, rate):
        _check_rate(rate)
        with self._lock:
            self._refill()
            self._rate = rate
            self._burst = _burst_for(rate, self._fixed_burst)
            self._tokens = min(self._tokens, self._burst)

    @property
    def burst(self):
        """How many tokens the bucket holds when full."""
        return self._burst

    def allow(self):
        """Take one token and return True, or return False when the bucket is empty."""
        with self._lock:
            self._refill()
            if self._tokens + _EPSILON < 1:
                return False
            self._tokens = max(0.0, self._tokens - 1)
            return True

    def _refill(self):
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)


def _check_rate(rate):
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError('rate must be a finite number >= 0, not %r' % (rate,))


def _burst_for(rate, burst):
    return burst if burst is not None else max(1, rate)
