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

"""``pslist``: the processes on the kernel's task list.

The walk follows ``init_task.tasks``, the list ``for_each_process`` uses, so it lists
thread-group leaders as ``ps`` does.  It is one screen on purpose: read each task's fields
in one slice, then resolve parents and credentials from what was already read.
"""

import struct

from vmi_agent.engine.probes.base import Probe, ProbeResult

#: include/linux/sched.h: "I am a kernel thread" (unchanged since 2.6.27).
PF_KTHREAD = 0x00200000
_INT = struct.Struct('<i')
_UINT = struct.Struct('<I')
_PTR = struct.Struct('<Q')


class TaskFields:
    """Offsets of the task_struct fields the process probes read, in one span."""

    NAMES = ('pid', 'tgid', 'flags', 'real_parent', 'cred', 'mm', 'comm')

    def __init__(self, kernel):
        task = kernel.struct('task_struct')
        self.tasks = task.offset('tasks')
        offs = {n: task.offset(n) for n in self.NAMES}
        self.start = min(offs.values())
        self.span = max(offs.values()) + 16 - self.start
        for name, off in offs.items():
            setattr(self, name, off - self.start)
        self.uid = kernel.struct('cred').offset('uid')

    def read(self, kernel, task):
        """``(pid, tgid, flags, real_parent, cred, mm, comm)`` of the task at ``task``."""
        data = kernel.read(task + self.start, self.span)
        comm = data[self.comm:self.comm + 16].split(b'\0', 1)[0]
        return (_INT.unpack_from(data, self.pid)[0], _INT.unpack_from(data, self.tgid)[0],
                _UINT.unpack_from(data, self.flags)[0],
                _PTR.unpack_from(data, self.real_parent)[0],
                _PTR.unpack_from(data, self.cred)[0], _PTR.unpack_from(data, self.mm)[0],
                comm.decode('utf-8', 'replace'))


def task_list(kernel, fields):
    """Yield ``(address, fields)`` for each task on ``init_task.tasks``."""
    head = kernel.symbol('init_task') + fields.tasks
    for task in kernel.walk_list(head, fields.tasks):
        yield task, fields.read(kernel, task)


class PsList(Probe):
    name = 'pslist'
    structs = ('task_struct', 'cred', 'list_head')
    symbols = ('init_task',)

    def run(self, kernel):
        fields = TaskFields(kernel)
        tasks = list(task_list(kernel, fields))
        tgid_of = {addr: f[1] for addr, f in tasks}
        uids = {}
        records = []
        for addr, (pid, tgid, flags, parent, cred, _mm, comm) in tasks:
            ppid = tgid_of.get(parent)
            if ppid is None:
                ppid = _parent_tgid(kernel, fields, parent)
            uid = uids.get(cred)
            if uid is None:
                uid = uids[cred] = kernel.u32(cred + fields.uid)
            records.append({'pid': pid, 'tgid': tgid, 'ppid': ppid, 'uid': uid,
                            'comm': comm, 'kernel_thread': bool(flags & PF_KTHREAD)})
        return ProbeResult(records=records)


def _parent_tgid(kernel, fields, parent):
    """tgid of a parent that is not on the task list (init_task, or a hidden task)."""
    if parent == kernel.symbol('init_task'):
        return 0
    return kernel.i32(parent + fields.start + fields.tgid)
