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

"""Rules of ``/v1/agents``: the compute hosts' agents are the operator's business."""

from oslo_policy import policy

from nova_vmi.policies import base

LIST = 'vmi:agents:list'

rules = [
    policy.DocumentedRuleDefault(
        name=LIST, check_str=base.ADMIN, scope_types=['project'],
        description='List the introspection agents and whether they are alive.',
        operations=[{'method': 'GET', 'path': '/v1/agents'}]),
]


def list_rules():
    return rules
