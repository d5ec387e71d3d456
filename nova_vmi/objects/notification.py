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

"""The notifications an agent publishes: event types, priorities and payloads.

One payload class per kind of event, each with a sample under
``doc/notification_samples/`` that a unit test keeps in step with the class (as Nova
does).  The listener dispatches on :data:`PAYLOADS`.
"""

from nova_vmi.objects import base
from nova_vmi.objects import fields

RUN_START = 'vmi.run.start'
RUN_END = 'vmi.run.end'
RUN_ERROR = 'vmi.run.error'
FINDING = 'vmi.finding'
HEARTBEAT = 'vmi.agent.heartbeat'

#: The notification topic agents publish on and the listener consumes.
DEFAULT_TOPIC = 'vmi_notifications'


def publisher_id(host):
    """``vmi-agent:<host>``: who sent a notification."""
    return 'vmi-agent:%s' % host


def finding_priority(severity):
    """oslo.messaging priority of a finding: ``warn`` or, for high and up, ``error``."""
    return 'error' if severity in ('high', 'critical') else 'warn'


@base.VMIObjectRegistry.register
class VMIFindingPayload(base.VMIObject):
    """Something a probe believes is wrong in the guest."""

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'run_id': fields.UUIDField(),
        'instance_uuid': fields.UUIDField(),
        'host': fields.StringField(),
        'probe': fields.StringField(),
        'kind': fields.StringField(),
        'severity': fields.SeverityField(),
        'summary': fields.StringField(),
        'evidence': fields.JsonField(default={}),
    }


@base.VMIObjectRegistry.register
class VMIProbeResultPayload(base.VMIObject):
    """What one probe returned: its records, or the error that stopped it."""

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'probe': fields.StringField(),
        'records': fields.JsonField(default=[]),
        'error': fields.StringField(nullable=True, default=None),
        'seconds': fields.FloatField(),
    }


@base.VMIObjectRegistry.register
class VMIRunPayload(base.VMIObject):
    """A run, at its start (no results yet) or its end.

    Timings: ``triggered_at`` is when the trigger reached the agent, ``started_at`` and
    ``ended_at`` bracket the probes, ``pause_seconds`` is how long the guest's vCPUs
    were stopped (0 in live mode).  ``coalesced`` counts the triggers this run answered
    beyond the first (triggers that arrived while the guest's previous run was going).
    """

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'run_id': fields.UUIDField(),
        'instance_uuid': fields.UUIDField(),
        'host': fields.StringField(),
        'trigger': fields.TriggerField(),
        'trigger_detail': fields.StringField(nullable=True, default=None),
        'probes': fields.ListOfStringsField(),
        'consistency': fields.ConsistencyField(),
        'coalesced': fields.IntegerField(default=0),
        'kernel_release': fields.StringField(nullable=True, default=None),
        'triggered_at': fields.TimestampField(),
        'started_at': fields.TimestampField(nullable=True, default=None),
        'ended_at': fields.TimestampField(nullable=True, default=None),
        'pause_seconds': fields.FloatField(default=0.0),
        'results': fields.ListOfObjectsField('VMIProbeResultPayload', default=[]),
        'findings': fields.ListOfObjectsField('VMIFindingPayload', default=[]),
    }


@base.VMIObjectRegistry.register
class VMIRunErrorPayload(VMIRunPayload):
    """A run that could not complete: the guest vanished, memory was unreadable..."""

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = dict(VMIRunPayload.fields,
                  error=fields.StringField(),
                  error_type=fields.StringField())


@base.VMIObjectRegistry.register
class VMIGuestPayload(base.VMIObject):
    """A guest an agent can introspect."""

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'uuid': fields.UUIDField(),
        'name': fields.StringField(nullable=True, default=None),
        'triggers': fields.ListOfStringsField(default=[]),
    }


@base.VMIObjectRegistry.register
class VMIHeartbeatPayload(base.VMIObject):
    """An agent's periodic report: it is alive, what it can do, which guests it sees.

    ``capabilities`` are the consistency modes and guest-trigger kinds of its driver
    (e.g. ``live``, ``pause``, ``trigger:debugcon``).
    """

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'host': fields.StringField(),
        'driver': fields.StringField(),
        'capabilities': fields.ListOfStringsField(),
        'interval': fields.IntegerField(),
        'version': fields.StringField(),
        'guests': fields.ListOfObjectsField('VMIGuestPayload', default=[]),
    }


#: event type -> (payload class, priority, or None when it depends on the payload)
PAYLOADS = {
    RUN_START: (VMIRunPayload, 'info'),
    RUN_END: (VMIRunPayload, 'info'),
    RUN_ERROR: (VMIRunErrorPayload, 'error'),
    FINDING: (VMIFindingPayload, None),
    HEARTBEAT: (VMIHeartbeatPayload, 'info'),
}
