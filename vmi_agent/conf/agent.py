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

"""``[DEFAULT] host``, ``[agent]`` and ``[notifications]``: the agent itself."""

import socket

from oslo_config import cfg

from nova_vmi.conf import groups

from nova_vmi.objects import notification

default_opts = [
    cfg.StrOpt('host', default=socket.gethostname(), sample_default='<hostname>',
               help='Name of this compute host, as Nova knows it: the agent serves RPC '
                    'on ``server=<host>`` and publishes as ``vmi-agent:<host>``.'),
]

AGENT = cfg.OptGroup('agent', title='introspection agent',
                     help='How the agent finds guests, runs probes and reports.')

agent_opts = [
    cfg.StrOpt('driver', default='qemu',
               help='Hypervisor driver (stevedore namespace ``vmi_agent.drivers``): '
                    '``qemu`` (QEMU or libvirt with file-backed shared RAM), ``dump`` '
                    '(memory image files) or ``xen``.'),
    cfg.ListOpt('default_probes', default=['pslist', 'modules'],
                help='Probes a run uses when neither the request nor the instance\'s '
                     'policy names any.'),
    cfg.StrOpt('default_consistency', default='live',
               choices=['live', 'pause', 'snapshot'],
               help='Consistency mode of instances without a policy: ``live`` reads '
                    'while the guest runs (a torn read is detected and retried), '
                    '``pause`` stops the vCPUs around the probes.'),
    cfg.FloatOpt('probe_timeout', default=30.0, min=0.1,
                 help='Seconds one probe may run before it is stopped and reported as '
                      'an error; the run\'s other probes still run.'),
    cfg.IntOpt('max_concurrent_runs', default=4, min=1,
               help='Runs at once across all guests (one at a time per guest).'),
    cfg.IntOpt('max_queued_runs', default=16, min=1,
               help='Requested runs that may wait per guest; beyond that a request '
                    'is answered with ``vmi.run.error``.  Periodic and guest triggers '
                    'never queue up: they coalesce into one pending run.'),
    cfg.IntOpt('live_retries', default=1, min=0,
               help='In live mode, how often a probe that met a torn guest list is '
                    'run again before its error is reported.'),
    cfg.IntOpt('heartbeat_interval', default=10, min=1,
               help='Seconds between ``vmi.agent.heartbeat`` notifications.'),
    cfg.IntOpt('guest_refresh_interval', default=5, min=1,
               help='Seconds between scans of the hypervisor for guests that came or '
                    'went.'),
    cfg.StrOpt('state_dir', default='/var/lib/vmi-agent',
               help='Where the agent keeps instance policies and probe state '
                    '(kernel-text baselines).'),
    cfg.StrOpt('profile_dir',
               help='Cache of kernel profiles, and where an operator may put kernel '
                    'images or System.map files by build id (default: '
                    '``<state_dir>/profiles``).'),
]

NOTIFICATIONS = cfg.OptGroup('notifications', title='notifications',
                             help='Where the agent publishes what it found.')

notification_opts = [
    cfg.StrOpt('topic', default=notification.DEFAULT_TOPIC,
               help='oslo.messaging topic of the versioned notifications '
                    '(``vmi.run.*``, ``vmi.finding``, ``vmi.agent.heartbeat``); '
                    'the transport is ``[oslo_messaging_notifications] transport_url``, '
                    'or ``[DEFAULT] transport_url`` when that is unset.'),
]


def register_opts(conf):
    conf.register_opts(default_opts)
    groups.register(conf, AGENT, agent_opts)
    groups.register(conf, NOTIFICATIONS, notification_opts)


def list_opts():
    return [('DEFAULT', default_opts), (AGENT, agent_opts),
            (NOTIFICATIONS, notification_opts)]
