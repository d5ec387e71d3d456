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

"""The oslo.policy enforcer of the API, and the one helper handlers call.

Rules are defaults in code (:mod:`nova_vmi.policies`); an operator's policy file
overrides them.  Scope is enforced: the rules are for project-scoped tokens.
"""

from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from nova_vmi import policies


class PolicyNotAuthorized(Exception):
    """The caller may see the resource but not do this to it (403)."""

    def __init__(self, rule):
        super().__init__('policy does not allow %s to be performed' % rule)
        self.rule = rule


def make_enforcer(conf):
    """An enforcer on ``conf`` with nova-vmi's rules registered."""
    enforcer = oslo_policy.Enforcer(conf)
    enforcer.register_defaults(policies.list_rules())
    return enforcer


def get_enforcer():
    """The ``oslo.policy.enforcer`` entry point (oslopolicy-sample-generator and friends)."""
    conf = cfg.ConfigOpts()
    # The oslopolicy tools own the command line: read only nova-vmi's config files.
    conf([], project='nova-vmi')
    return make_enforcer(conf)


def target_for(context, project_id):
    """The policy target of a resource of ``project_id`` (None: not known)."""
    return {'project_id': project_id, 'user_id': context.user_id}


def authorize(enforcer, context, rule, target):
    """Raise PolicyNotAuthorized unless ``context`` may do ``rule`` on ``target``."""
    try:
        allowed = enforcer.authorize(rule, target, context)
    except oslo_policy.InvalidScope:
        allowed = False
    if not allowed:
        raise PolicyNotAuthorized(rule)


def is_admin(enforcer, context):
    """Whether ``context`` is an administrator (the ``context_is_admin`` rule)."""
    return bool(enforcer.authorize('context_is_admin', {}, context, do_raise=False))
