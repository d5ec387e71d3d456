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

"""A request for one run, as the control plane casts it to an agent."""

from nova_vmi.objects import base
from nova_vmi.objects import fields


@base.VMIObjectRegistry.register
class VMIRunRequest(base.VMIObject):
    """Run ``probes`` on ``instance_uuid``; the agent reports under ``run_id``.

    ``consistency`` None means the instance's policy decides.
    """

    # Version 1.0: initial version
    VERSION = '1.0'

    fields = {
        'run_id': fields.UUIDField(),
        'instance_uuid': fields.UUIDField(),
        'probes': fields.ListOfStringsField(),
        'trigger': fields.TriggerField(default='on_demand'),
        'consistency': fields.ConsistencyField(nullable=True, default=None),
        'requested_at': fields.TimestampField(),
    }
