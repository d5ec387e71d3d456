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

"""``[dump]``: the ``dump`` driver, memory image files taken earlier."""

from oslo_config import cfg

from nova_vmi.conf import groups

GROUP = cfg.OptGroup('dump', title='dump driver',
                     help='Offline analysis: each guest is a memory image file.')

opts = [
    cfg.StrOpt('image_dir', default='/var/lib/vmi-agent/dumps',
               help='Directory of memory images, one per guest, named '
                    '``<instance-uuid>.<ext>`` (raw RAM, ``.raw``/``.ram``, or ELF core, '
                    '``.elf``/``.core``).  A ``<instance-uuid>.json`` beside an image may '
                    'give its ``name`` and ``machine`` (q35 or pc).'),
]


def register_opts(conf):
    groups.register(conf, GROUP, opts)


def list_opts():
    return [(GROUP, opts)]
