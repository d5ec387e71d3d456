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

"""The check strings every nova-vmi rule is built from (scope-aware, as Nova's)."""

from oslo_policy import policy

ADMIN = 'role:admin'
PROJECT_MEMBER = 'role:member and project_id:%(project_id)s'
PROJECT_READER = 'role:reader and project_id:%(project_id)s'
ADMIN_OR_PROJECT_MEMBER = 'rule:context_is_admin or (%s)' % PROJECT_MEMBER
ADMIN_OR_PROJECT_READER = 'rule:context_is_admin or (%s)' % PROJECT_READER

rules = [
    policy.RuleDefault(
        name='context_is_admin', check_str=ADMIN,
        description='Who is an administrator: sees every instance, run and finding.'),
]


def list_rules():
    return rules
