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

"""Rules of runs: a project member may introspect its own instances, a reader may look."""

from oslo_policy import policy

from nova_vmi.policies import base

CREATE = 'vmi:runs:create'
LIST = 'vmi:runs:list'
GET = 'vmi:runs:get'

rules = [
    policy.DocumentedRuleDefault(
        name=CREATE, check_str=base.ADMIN_OR_PROJECT_MEMBER, scope_types=['project'],
        description='Request an on-demand introspection run of an instance.',
        operations=[{'method': 'POST', 'path': '/v1/instances/{instance_uuid}/runs'}]),
    policy.DocumentedRuleDefault(
        name=LIST, check_str=base.ADMIN_OR_PROJECT_READER, scope_types=['project'],
        description="List an instance's runs.",
        operations=[{'method': 'GET', 'path': '/v1/instances/{instance_uuid}/runs'}]),
    policy.DocumentedRuleDefault(
        name=GET, check_str=base.ADMIN_OR_PROJECT_READER, scope_types=['project'],
        description='Show a run: status, trigger, timings, results and findings.',
        operations=[{'method': 'GET', 'path': '/v1/runs/{run_id}'}]),
]


def list_rules():
    return rules
