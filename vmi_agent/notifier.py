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

"""The agent's versioned notifications, published through oslo.messaging.

Publishing to the broker takes a millisecond or two; a run should not wait for it.  So
:meth:`AgentNotifier.emit` turns the payload into its wire form at once and hands it to
one publisher thread, which sends notifications in the order they were emitted (a run's
start before its end).  The queue is bounded: when the broker cannot keep up, emitters
wait rather than the agent growing without bound.
"""

import logging
import queue
import threading

import oslo_messaging as messaging

from nova_vmi.objects import notification

LOG = logging.getLogger(__name__)

_STOP = object()


class AgentNotifier:
    """Publishes payloads under their event type, as ``vmi-agent:<host>``."""

    def __init__(self, transport, host, topic, max_pending=10000):
        self._notifier = messaging.Notifier(
            transport, publisher_id=notification.publisher_id(host),
            driver='messagingv2', topics=[topic])
        self._pending = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._publish, name='vmi-notifier',
                                        daemon=True)
        self._thread.start()

    def emit(self, event_type, payload):
        """Queue ``payload`` (the class :data:`notification.PAYLOADS` names)."""
        cls, priority = notification.PAYLOADS[event_type]
        if not isinstance(payload, cls):
            raise TypeError('%s carries a %s, not a %s'
                            % (event_type, cls.obj_name(), type(payload).__name__))
        if priority is None:
            priority = notification.finding_priority(payload.severity)
        self._pending.put((priority, event_type, payload.to_primitive()))

    def _publish(self):
        while True:
            item = self._pending.get()
            if item is _STOP:
                return
            priority, event_type, primitive = item
            try:
                getattr(self._notifier, priority)({}, event_type, primitive)
            except Exception:
                # oslo.messaging retries a lost connection itself; what is left is a bug
                # or a payload the driver refused: log it and carry on with the rest.
                LOG.exception('could not publish %s', event_type)

    def stop(self, timeout=10.0):
        """Publish what is queued (for up to ``timeout`` seconds), then stop."""
        self._pending.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            LOG.warning('%d notifications not published at shutdown',
                        self._pending.qsize())
