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

"""Rules of findings: what the probes flagged, readable by the instance's project."""

from oslo_policy import policy

from nova_vmi.policies import base

LIST = 'vmi:findings:list'

rules = [
    policy.DocumentedRuleDefault(
        name=LIST, check_str=base.ADMIN_OR_PROJECT_READER, scope_types=['project'],
        description="List findings: all of them for an admin, the caller's project's "
                    "otherwise.",
        operations=[{'method': 'GET', 'path': '/v1/findings'},
                    {'method': 'GET', 'path': '/v1/instances/{instance_uuid}/findings'}]),
]


def list_rules():
    return rules
