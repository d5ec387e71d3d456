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

"""Collects the agent's notifications from the bus, for tests and benchmarks.

A real oslo.messaging notification listener (threading executor) on the agent's topic;
``wait_for`` blocks until a matching notification arrives.
"""

import threading
import time

from oslo_config import cfg
import oslo_messaging as messaging


class Notification:
    __slots__ = ('event_type', 'priority', 'publisher_id', 'payload', 'received')

    def __init__(self, event_type, priority, publisher_id, payload):
        self.event_type = event_type
        self.priority = priority
        self.publisher_id = publisher_id
        self.payload = payload
        #: ``time.perf_counter()`` at arrival.
        self.received = time.perf_counter()

    @property
    def data(self):
        """The payload's ``nova_object.data``."""
        return self.payload['nova_object.data']

    def __repr__(self):
        return '<%s %s %s>' % (self.event_type, self.publisher_id,
                               self.data.get('run_id', ''))


class _Endpoint:
    def __init__(self, collector):
        self._collector = collector

    def _add(self, priority, publisher_id, event_type, payload):
        self._collector.add(Notification(event_type, priority, publisher_id, payload))

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._add('INFO', publisher_id, event_type, payload)

    def warn(self, ctxt, publisher_id, event_type, payload, metadata):
        self._add('WARN', publisher_id, event_type, payload)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._add('ERROR', publisher_id, event_type, payload)


class NotificationCollector:
    """Every notification on ``topic``, in arrival order."""

    def __init__(self, transport_url, topic):
        self._transport = messaging.get_notification_transport(cfg.CONF, url=transport_url)
        self._cond = threading.Condition()
        self.received = []
        self._listener = messaging.get_notification_listener(
            self._transport, [messaging.Target(topic=topic)], [_Endpoint(self)])

    def add(self, note):
        with self._cond:
            self.received.append(note)
            self._cond.notify_all()

    def start(self):
        self._listener.start()
        return self

    def stop(self):
        self._listener.stop()
        self._listener.wait()
        self._transport.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def matching(self, event_type=None, **data):
        """Notifications so far of ``event_type`` whose data has the given values."""
        with self._cond:
            return [n for n in self.received
                    if (event_type is None or n.event_type == event_type)
                    and all(n.data.get(k) == v for k, v in data.items())]

    def wait_for(self, event_type, timeout=30.0, count=1, **data):
        """Block until ``count`` matching notifications arrived; return them.

        TimeoutError (with what did arrive) when they do not come in ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.matching(event_type, **data)
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        'expected %d %s with %s in %ss; got %d. Last seen: %s'
                        % (count, event_type, data, timeout, len(found),
                           self.received[-5:]))
                self._cond.wait(left)
