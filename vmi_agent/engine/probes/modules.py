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

"""``modules``: the loadable kernel modules on the kernel's ``modules`` list.

The same list ``/proc/modules`` prints.  A module's size is what ``/proc/modules`` shows:
``init_layout.size + core_layout.size`` before Linux 6.4, the sum of ``mem[].size``
from 6.4 on; which one applies is read from the kernel's own types.
"""

import struct

from vmi_agent.engine.probes.base import Probe, ProbeResult

#: Far above any real module count (a few hundred); bounds a forged list.
MAX_MODULES = 65536
MODULE_NAME_LEN = 56
_UINT = struct.Struct('<I')


class ModuleFields:
    """Offsets of the struct module fields the module probes read."""

    def __init__(self, kernel):
        module = kernel.struct('module')
        self.list = module.offset('list')
        self.name = module.offset('name')
        self.state = module.offset('state')
        if module.has('mem'):
            mem = module.member('mem')
            size_off = kernel.struct(mem['elem_type']).offset('size')
            self.sizes = [mem['offset'] + i * mem['elem_size'] + size_off
                          for i in range(mem['count'])]
        else:
            self.sizes = [module.offset('core_layout.size'),
                          module.offset('init_layout.size')]
        states = kernel.profile.enum('module_state')
        self.state_names = {v: k.replace('MODULE_STATE_', '').lower()
                            for k, v in states.items()}

    def read(self, kernel, module):
        """``(name, size, state)`` of the module at ``module``."""
        raw = kernel.read(module + self.name, MODULE_NAME_LEN)
        name = raw.split(b'\0', 1)[0].decode('utf-8', 'replace')
        size = sum(_UINT.unpack(kernel.read(module + off, 4))[0] for off in self.sizes)
        state = _UINT.unpack(kernel.read(module + self.state, 4))[0]
        return name, size, self.state_names.get(state, 'unknown(%d)' % state)


def module_list(kernel, fields):
    """Yield ``(address, (name, size, state))`` for each module on ``modules``."""
    head = kernel.symbol('modules')
    for module in kernel.walk_list(head, fields.list, limit=MAX_MODULES):
        yield module, fields.read(kernel, module)


class Modules(Probe):
    name = 'modules'
    structs = ('module', 'list_head')
    enums = ('module_state',)
    symbols = ('modules',)

    def run(self, kernel):
        fields = kernel.memo(ModuleFields)
        records = []
        for _, (name, size, state) in module_list(kernel, fields):
            records.append({'name': name, 'size': size, 'state': state})
        return ProbeResult(records=records)
