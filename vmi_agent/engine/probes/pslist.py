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

import operator
import struct

from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.probes.base import Probe, ProbeResult

#: include/linux/sched.h: "I am a kernel thread" (unchanged since 2.6.27).
PF_KTHREAD = 0x00200000
_UINT = struct.Struct('<I')


class TaskFields:
    """The task_struct fields the process probes read, as one span and one unpack.

    ``tasks`` (the list links) is inside the span, so walking the list and reading a
    task's fields is one read and one ``unpack_from`` per task.
    """

    #: field -> struct format; read in one go from the lowest offset to the highest.
    FIELDS = (('pid', 'i'), ('tgid', 'i'), ('flags', 'I'), ('real_parent', 'Q'),
              ('cred', 'Q'), ('mm', 'Q'), ('comm', '16s'))

    def __init__(self, kernel):
        task = kernel.struct('task_struct')
        self.tasks = task.offset('tasks')
        placed = sorted((task.offset(name), i, fmt)
                        for i, (name, fmt) in enumerate(self.FIELDS))
        self.start = min(placed[0][0], self.tasks)
        end = max(placed[-1][0] + struct.calcsize(placed[-1][2]), self.tasks + 16)
        self.span = end - self.start
        fmt, pos = '<', self.start
        for off, _, code in placed:
            if off < pos:
                raise ProfileError('task_struct fields overlap at offset %d' % off)
            fmt += '%dx%s' % (off - pos, code) if off > pos else code
            pos = off + struct.calcsize(code)
        self._unpack = struct.Struct(fmt).unpack_from
        # unpack_from returns fields in offset order; put them back in FIELDS order.
        ranks = {i: rank for rank, (_, i, _) in enumerate(placed)}
        self._reorder = operator.itemgetter(*(ranks[i] for i in range(len(self.FIELDS))))
        self.tgid_offset = task.offset('tgid')
        self.uid = kernel.struct('cred').offset('uid')

    def parse(self, data):
        """``(pid, tgid, flags, real_parent, cred, mm, comm)`` from a task's span."""
        pid, tgid, flags, parent, cred, mm, comm = self._reorder(self._unpack(data))
        return (pid, tgid, flags, parent, cred, mm,
                comm.partition(b'\0')[0].decode('utf-8', 'replace'))


def task_list(kernel, fields):
    """Yield ``(address, parsed fields)`` for each task on ``init_task.tasks``."""
    head = kernel.symbol('init_task') + fields.tasks
    for task, data in kernel.walk_list_read(head, fields.tasks, fields.start, fields.span):
        yield task, fields.parse(data)


class PsList(Probe):
    name = 'pslist'
    structs = ('task_struct', 'cred', 'list_head')
    symbols = ('init_task',)

    def run(self, kernel):
        fields = kernel.memo(TaskFields)
        tasks = list(task_list(kernel, fields))
        tgid_of = {addr: f[1] for addr, f in tasks}
        view, uid_at, uids = kernel.space.view, fields.uid, {}
        records = []
        for _, (pid, tgid, flags, parent, cred, _mm, comm) in tasks:
            ppid = tgid_of.get(parent)
            if ppid is None:
                ppid = _parent_tgid(kernel, fields, parent)
            uid = uids.get(cred)
            if uid is None:
                uid = uids[cred] = _UINT.unpack_from(view(cred + uid_at, 4))[0]
            records.append({'pid': pid, 'tgid': tgid, 'ppid': ppid, 'uid': uid,
                            'comm': comm, 'kernel_thread': bool(flags & PF_KTHREAD)})
        return ProbeResult(records=records)


def _parent_tgid(kernel, fields, parent):
    """tgid of a parent that is not on the task list (init_task, or a hidden task)."""
    if parent == kernel.symbol('init_task'):
        return 0
    return kernel.i32(parent + fields.tgid_offset)
