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

"""Host-side tampering with a running test-bed guest's kernel, as a rootkit would do it.

For the tampering tests and the demo: 8-byte stores into guest memory at kernel virtual
addresses (translated by the engine's view of the guest), each one undone by
:meth:`Tamper.restore`.
"""

import contextlib

from vmi_agent.engine import probes


def tasks_by_pid(kernel):
    """pid -> task address, from every view ``hidden_tasks`` has."""
    results, _ = probes.run_probes(kernel, ['hidden_tasks'])
    return {r['pid']: int(r['task'], 16) for r in results['hidden_tasks'].records}


class Tamper:
    """Host-side 8-byte stores into the guest, each undone by :meth:`restore`."""

    def __init__(self, guest, kernel):
        self.guest, self.kernel = guest, kernel
        self._undo = []

    def store(self, vaddr, value):
        paddr = self.kernel.space.translate(vaddr)
        self._undo.append((paddr, self.kernel.u64(vaddr)))
        self.guest.write_u64(paddr, value)

    @contextlib.contextmanager
    def paused(self):
        self.guest.pause()
        try:
            yield self
        finally:
            self.guest.resume()

    def escalate(self, pid):
        """Give process ``pid`` the kernel's own credentials (``init_cred``): root."""
        task = tasks_by_pid(self.kernel)[pid]
        task_struct = self.kernel.struct('task_struct')
        init_cred = self.kernel.symbol('init_cred')
        with self.paused():
            self.store(task + task_struct.offset('real_cred'), init_cred)
            self.store(task + task_struct.offset('cred'), init_cred)

    def hook_syscall(self, number, target):
        """Point ``sys_call_table[number]`` at ``target``."""
        self.store(self.kernel.symbol('sys_call_table') + number * 8, target)

    def restore(self):
        with self.paused():
            while self._undo:
                paddr, value = self._undo.pop()
                self.guest.write_u64(paddr, value)
