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

"""Rules of ``/v1/instances/{uuid}/policy``: what runs on an instance, and when.

Setting a policy makes an agent spend host CPU on its own schedule (periodic and
guest-triggered runs), so only an admin sets or deletes one; the project may read it.
"""

from oslo_policy import policy

from nova_vmi.policies import base

PATH = '/v1/instances/{instance_uuid}/policy'
GET = 'vmi:policy:get'
SET = 'vmi:policy:set'
DELETE = 'vmi:policy:delete'

rules = [
    policy.DocumentedRuleDefault(
        name=GET, check_str=base.ADMIN_OR_PROJECT_READER, scope_types=['project'],
        description="Show an instance's introspection policy.",
        operations=[{'method': 'GET', 'path': PATH}]),
    policy.DocumentedRuleDefault(
        name=SET, check_str=base.ADMIN, scope_types=['project'],
        description="Set an instance's introspection policy (cast to its agent).",
        operations=[{'method': 'PUT', 'path': PATH}]),
    policy.DocumentedRuleDefault(
        name=DELETE, check_str=base.ADMIN, scope_types=['project'],
        description="Return an instance to the default policy (on-demand runs only).",
        operations=[{'method': 'DELETE', 'path': PATH}]),
]


def list_rules():
    return rules
