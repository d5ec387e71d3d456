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

"""``[listener]``: nova-vmi-listener, the agents' notifications into the database."""

from oslo_config import cfg

from nova_vmi.conf import groups
from nova_vmi.objects import notification

GROUP = cfg.OptGroup('listener', title='notification listener',
                     help='Consumes the agents\' notifications into the database.')

opts = [
    cfg.StrOpt('topic', default=notification.DEFAULT_TOPIC,
               help='Notification topic the agents publish on (their '
                    '``[notifications] topic``).'),
    cfg.StrOpt('pool', default='nova-vmi-listener',
               help='Listener pool: listeners in one pool share the notifications '
                    '(competing consumers), so more of them scale out.'),
    cfg.FloatOpt('requeue_delay', default=1.0, min=0,
                 help='Seconds to wait before handing a notification back to the bus '
                      'when the database cannot take it, so that an outage is not a '
                      'busy loop.'),
]


def register_opts(conf):
    groups.register(conf, GROUP, opts)


def list_opts():
    return [(GROUP, opts)]
