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

"""``[api]``: the ``nova-vmi-api`` service: authentication, paste pipeline, limits, probes."""

from oslo_config import cfg

from nova_vmi.conf import groups

GROUP = cfg.OptGroup('api', title='introspection API',
                     help='The nova-vmi REST API (``nova-vmi-api``).')

#: The engine's probes (the agent's ``vmi_agent.probes`` entry points).  The control plane
#: has no engine, so it cannot ask stevedore: the list is configuration.
DEFAULT_PROBES = ['pslist', 'modules', 'syscalls', 'idt', 'hidden_tasks', 'hidden_modules',
                  'creds', 'kernel_text']

opts = [
    cfg.StrOpt('auth_strategy', default='keystone', choices=['keystone', 'noauth'],
               help='``keystone``: keystonemiddleware ``auth_token`` validates every '
                    'request\'s token.  ``noauth``: trust the ``X-User-Id``, '
                    '``X-Project-Id`` and ``X-Roles`` headers (an embedded, single-user '
                    'deployment or a test bed only: never expose it).'),
    cfg.StrOpt('api_paste_config', default='api-paste.ini',
               help='The paste deployment file of the API pipeline; a relative path is '
                    'looked for beside the configuration files.'),
    cfg.HostAddressOpt('bind_host', default='127.0.0.1',
                       help='Address the development server (``nova-vmi-api``) listens '
                            'on.  Deployments run ``nova_vmi.api.wsgi:application`` under '
                            'uwsgi or gunicorn instead.'),
    cfg.PortOpt('bind_port', default=8779,
                help='Port the development server listens on.'),
    cfg.IntOpt('max_limit', default=100, min=1,
               help='The most items one page of a list holds; a larger ``limit`` is '
                    'reduced to this.'),
    cfg.IntOpt('max_body_bytes', default=65536, min=1024,
               help='Request bodies larger than this are refused with 413.'),
    cfg.ListOpt('probes', default=DEFAULT_PROBES,
                help='Probe names a policy or a run may ask for: the probes the agents '
                     'have (their ``vmi_agent.probes`` entry points).'),
    cfg.IntOpt('agent_down_intervals', default=3, min=1,
               help='An agent is alive while its last heartbeat is younger than this many '
                    'of its heartbeat intervals.'),
    cfg.IntOpt('rpc_timeout', default=30, min=1,
               help='Seconds the API waits for an agent to answer an RPC call.'),
]


def register_opts(conf):
    groups.register(conf, GROUP, opts)


def list_opts():
    return [(GROUP, opts)]
