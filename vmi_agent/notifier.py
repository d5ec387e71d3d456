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

"""The agent's versioned notifications, published through oslo.messaging."""

import logging

import oslo_messaging as messaging

from nova_vmi.objects import notification

LOG = logging.getLogger(__name__)


class AgentNotifier:
    """Publishes payloads under their event type, as ``vmi-agent:<host>``."""

    def __init__(self, transport, host, topic):
        self._notifier = messaging.Notifier(
            transport, publisher_id=notification.publisher_id(host),
            driver='messagingv2', topics=[topic])

    def emit(self, event_type, payload):
        """Publish ``payload`` (the class :data:`notification.PAYLOADS` names)."""
        cls, priority = notification.PAYLOADS[event_type]
        if not isinstance(payload, cls):
            raise TypeError('%s carries a %s, not a %s'
                            % (event_type, cls.obj_name(), type(payload).__name__))
        if priority is None:
            priority = notification.finding_priority(payload.severity)
        getattr(self._notifier, priority)({}, event_type, payload.to_primitive())
