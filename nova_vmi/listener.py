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

"""nova-vmi-listener: the agents' notifications, into the database, exactly once.

A notification is acknowledged only after its rows are committed.  When the database
cannot take it (down, unreachable, a deadlock) the notification goes back to the bus
(``REQUEUE``) after a short delay, and is stored when the database returns.  Storing is
idempotent on the run id, so a notification delivered twice changes nothing the second
time.  A notification that can never be stored (not ours, malformed) is logged and
dropped, not requeued forever.

Findings are stored with their run, from ``vmi.run.end``, in the same transaction; the
separate ``vmi.finding`` notifications are for other consumers (a SIEM) and need no row.
"""

import logging
import time

from oslo_db import exception as db_exc
import oslo_messaging as messaging
from oslo_service import service

from nova_vmi import context as vmi_context
from nova_vmi.db import api as db_api
from nova_vmi.objects import notification

LOG = logging.getLogger(__name__)

#: Database errors that another attempt will not fix: drop the message, do not requeue.
_PERMANENT = (db_exc.DBDataError, db_exc.DBReferenceError, db_exc.DBDuplicateEntry,
              db_exc.ColumnError, db_exc.DBInvalidUnicodeParameter)

_STORE = {
    notification.RUN_START: db_api.run_started,
    notification.RUN_END: db_api.run_ended,
    notification.RUN_ERROR: db_api.run_failed,
    notification.HEARTBEAT: db_api.agent_heartbeat,
}


class NotificationEndpoint:
    """The oslo.messaging endpoint: one method per priority, all alike."""

    filter_rule = messaging.NotificationFilter(publisher_id=r'^vmi-agent:',
                                               event_type=r'^vmi\.')

    def __init__(self, requeue_delay=1.0):
        self.requeue_delay = requeue_delay

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        return self.store(event_type, payload)

    warn = error = info

    def store(self, event_type, payload):
        """Store one notification; HANDLED, or REQUEUE when the database failed."""
        kind = notification.PAYLOADS.get(event_type)
        if kind is None:
            LOG.debug('ignoring %s: not an event nova-vmi stores', event_type)
            return messaging.NotificationResult.HANDLED
        try:
            obj = kind[0].from_primitive(payload)
        except ValueError as exc:
            LOG.warning('dropping a malformed %s: %s', event_type, exc)
            return messaging.NotificationResult.HANDLED
        store = _STORE.get(event_type)
        if store is None:
            return messaging.NotificationResult.HANDLED
        try:
            store(vmi_context.get_admin_context(), obj)
        except _PERMANENT as exc:
            LOG.error('dropping %s that the database refuses: %s', event_type, exc)
            return messaging.NotificationResult.HANDLED
        except db_exc.DBError as exc:
            LOG.warning('database unavailable, %s goes back to the bus: %s',
                        event_type, exc)
            time.sleep(self.requeue_delay)
            return messaging.NotificationResult.REQUEUE
        return messaging.NotificationResult.HANDLED


def get_listener(conf, transport):
    """The notification listener of ``conf``: threads, requeue allowed, one pool."""
    endpoint = NotificationEndpoint(conf.listener.requeue_delay)
    return messaging.get_notification_listener(
        transport, [messaging.Target(topic=conf.listener.topic)], [endpoint],
        pool=conf.listener.pool, allow_requeue=True)


class ListenerService(service.Service):
    """Runs the listener; several processes or hosts may run one each (one pool)."""

    def __init__(self, conf):
        super().__init__()
        self.conf = conf
        self._transport = self._listener = None

    def start(self):
        super().start()
        db_api.configure(self.conf)
        self._transport = messaging.get_notification_transport(self.conf)
        self._listener = get_listener(self.conf, self._transport)
        self._listener.start()
        LOG.info('nova-vmi-listener consuming topic %s in pool %s',
                 self.conf.listener.topic, self.conf.listener.pool)

    def stop(self, graceful=False):
        if self._listener is not None:
            self._listener.stop()
            self._listener.wait()
        if self._transport is not None:
            self._transport.cleanup()
        super().stop(graceful)
