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

"""The rules in code: who may do what by default."""

from oslo_config import cfg
import pytest

from nova_vmi import context as vmi_context
from nova_vmi import policies
from nova_vmi import policy

ADMIN = ['admin', 'member', 'reader']
MEMBER = ['member', 'reader']
READER = ['reader']


@pytest.fixture(scope='module')
def enforcer():
    conf = cfg.ConfigOpts()
    conf([])
    return policy.make_enforcer(conf)


def allowed(enforcer, rule, roles, own=True):
    ctx = vmi_context.RequestContext(user_id='u', project_id='p1', roles=roles)
    target = policy.target_for(ctx, 'p1' if own else 'p2')
    try:
        policy.authorize(enforcer, ctx, rule, target)
    except policy.PolicyNotAuthorized:
        return False
    return True


def test_every_api_rule_is_project_scoped_and_documented():
    for rule in policies.list_rules():
        if rule.name == 'context_is_admin':
            continue
        assert rule.scope_types == ['project'], rule.name
        assert rule.description and rule.operations, rule.name


@pytest.mark.parametrize('rule, roles, own, expected', [
    ('vmi:agents:list', ADMIN, True, True),
    ('vmi:agents:list', MEMBER, True, False),
    ('vmi:policy:set', ADMIN, False, True),
    ('vmi:policy:set', MEMBER, True, False),
    ('vmi:policy:delete', MEMBER, True, False),
    ('vmi:policy:get', READER, True, True),
    ('vmi:policy:get', READER, False, False),
    ('vmi:runs:create', MEMBER, True, True),
    ('vmi:runs:create', READER, True, False),
    ('vmi:runs:create', MEMBER, False, False),
    ('vmi:runs:create', ADMIN, False, True),
    ('vmi:runs:get', READER, True, True),
    ('vmi:runs:list', READER, False, False),
    ('vmi:findings:list', READER, True, True),
    ('vmi:findings:list', ['other'], True, False),
])
def test_default_rules(enforcer, rule, roles, own, expected):
    assert allowed(enforcer, rule, roles, own) is expected, \
        '%s for roles %s on %s project' % (rule, roles, 'own' if own else 'another')
