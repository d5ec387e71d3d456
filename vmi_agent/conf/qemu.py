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

"""``[qemu]``: the ``qemu`` driver, guests of plain QEMU and of libvirt/KVM on this host."""

from oslo_config import cfg

from nova_vmi.conf import groups

GROUP = cfg.OptGroup('qemu', title='qemu driver',
                     help='Live guests whose RAM QEMU keeps in a shared file: guests '
                          'described by files in ``guest_dir`` and, if ``libvirt_uri`` is '
                          'set, libvirt domains with file-backed memory.')

opts = [
    cfg.StrOpt('guest_dir', default='/var/lib/vmi-agent/guests',
               help='Directory of guest descriptors for QEMU guests not managed by '
                    'libvirt, one ``*.json`` file per guest: ``{"uuid": ..., "name": ..., '
                    '"ram_path": ..., "qmp_path": ..., "debugcon_path": ..., '
                    '"machine": "q35"|"pc"}`` (``debugcon_path`` and ``machine`` optional, '
                    'machine q35 by default).  ``qmp_path`` must be a QMP socket reserved '
                    'for the agent: QEMU serves one client per QMP socket.  A missing '
                    'directory means no such guests.'),
    cfg.StrOpt('libvirt_uri', default=None,
               help='libvirt connection URI (``qemu:///system`` on a Nova compute host); '
                    'unset, libvirt is not asked.  Only running domains with file-backed, '
                    'shared memory (Nova\'s ``[libvirt] file_backed_memory``) are listed; '
                    'needs the libvirt Python binding.'),
    cfg.StrOpt('libvirt_debugcon_dir', default=None,
               help='Directory where the debug-port (isa-debugcon) sockets of libvirt '
                    'guests are, as ``<instance-uuid>.sock``; a guest with such a socket '
                    'offers the ``debugcon`` guest trigger.  Unset, libvirt guests have no '
                    'guest trigger.'),
    cfg.FloatOpt('qmp_timeout', default=5.0, min=0.1,
                 help='Seconds to wait for QEMU to answer a QMP command (pause, resume, '
                      'memory queries) before the guest is reported as not answering.'),
]


def register_opts(conf):
    groups.register(conf, GROUP, opts)


def list_opts():
    return [(GROUP, opts)]
