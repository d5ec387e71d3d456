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

"""``hidden_tasks``: tasks that one of the kernel's own indexes does not show.

A rootkit hides a process by unlinking its ``task_struct`` from ``init_task.tasks`` (what
``for_each_process`` and so ``pslist`` walk); the process keeps running because the
scheduler never looks at that list, and ``/proc`` still finds it through the PID table.
This probe compares three views of the tasks:

``task_list``
    ``init_task.tasks``: the thread-group leaders (``pslist.task_list``).
``pid_table``
    ``init_pid_ns.idr``: every ``struct pid`` of the initial PID namespace (which holds
    every task's global pid, including tasks of child namespaces), and for each the task
    on its ``tasks[PIDTYPE_PID]`` hlist, linked through ``task_struct.pid_links``
    (``pids[].node`` before Linux 4.19).  The IDR is an xarray (Linux 4.20+).
``thread_group``
    For the ``signal_struct`` of every task seen so far: ``signal->thread_head`` walked
    through ``task_struct.thread_node`` (the list ``for_each_thread`` uses), or the
    ``thread_group`` ring on kernels without ``thread_head``.

Findings (kind ``hidden_task``, one per task):

- **high**: a thread-group leader (``group_leader == task``) seen through the PID table
  or a thread group but not on the task list; or a thread whose group leader is neither
  on the task list nor reported itself (its process is hidden, or its ``group_leader``
  is forged).  Threads are not on the task list by design and are not reported for that.
- **medium**: a task (leader or thread) seen on the task list or in a thread group whose
  pid does not lead to it through the PID table: ``kill``, ``/proc`` and ``ptrace`` cannot
  find it (what a rootkit that calls ``detach_pid`` produces).

A live guest may fork or reap a task between two walks, which looks like either finding.
When the first pass finds anything, the views are read again and only what both passes
agree on is reported: a real hiding persists, a race does not.

The walks are bounded (``MAX_TASKS`` tasks, ``MAX_XA_NODES`` xarray nodes, ``xa_node``
shifts checked level by level, cycles detected); a table that breaks these rules makes
the probe fail with GuestDataError, since nothing it says can be trusted then.

Not covered: PID tables of kernels before 4.20 (a radix tree or ``pid_hash``:
ProfileError), the per-CPU idle tasks (pid 0, in no index at all), tasks unlinked from
every view (only a scan of the task slab would find them), and a rootkit that forges a
consistent copy of every index.
"""

import struct

from vmi_agent.engine.errors import GuestDataError, ProfileError
from vmi_agent.engine.linux.kernel import MAX_LIST
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.probes.pslist import TaskFields, task_list

#: Bound of the tasks collected from all views (the walks' own bound, MAX_LIST).
MAX_TASKS = MAX_LIST
#: A full PID table (PID_MAX_LIMIT = 4M pids) needs 66,577 nodes of 64 slots.
MAX_XA_NODES = 70000
#: A pid's PIDTYPE_PID hlist holds one task; a longer one is forged.
MAX_PID_TASKS = 16
#: pids are ints: an xarray root whose shift allows indexes past 2**36 is forged.
MAX_INDEX_BITS = 36
#: lib/xarray.c: internal entries are ...10 in binary, and node pointers are those above
#: 4096 (below are sibling, retry and zero entries); value entries have bit 0 set.
_INTERNAL, _NODE_MIN = 2, 4096

VIEW_LIST, VIEW_PIDS, VIEW_THREADS = 'task_list', 'pid_table', 'thread_group'


class TaskLinks:
    """Offsets of the links from a task to its thread group, read from BTF."""

    def __init__(self, kernel):
        task = kernel.struct('task_struct')
        self.group_leader = task.offset('group_leader')
        self.signal = task.offset('signal')
        signal = kernel.struct('signal_struct')
        if signal.has('thread_head') and task.has('thread_node'):
            self.thread_head = signal.offset('thread_head')
            self.thread_link = task.offset('thread_node')
        elif task.has('thread_group'):
            self.thread_head = None                # a ring through the tasks themselves
            self.thread_link = task.offset('thread_group')
        else:
            raise ProfileError('no thread list: neither signal_struct.thread_head nor '
                               'task_struct.thread_group')

    def leader_and_signal(self, kernel, task):
        return kernel.u64(task + self.group_leader), kernel.u64(task + self.signal)


class PidLinks:
    """Offsets from ``init_pid_ns`` to its IDR, and from a ``struct pid`` to its task."""

    def __init__(self, kernel):
        task = kernel.struct('task_struct')
        try:
            pid_pid = kernel.profile.enum('pid_type').get('PIDTYPE_PID', 0)
        except ProfileError:
            pid_pid = 0
        if task.has('pid_links'):                 # 4.19+: struct hlist_node pid_links[]
            links = task.member('pid_links')
            self.pid_link = links['offset'] + pid_pid * links['elem_size']
        elif task.has('pids'):                    # before: struct pid_link pids[]
            links = task.member('pids')
            self.pid_link = (links['offset'] + pid_pid * links['elem_size']
                             + kernel.struct('pid_link').offset('node'))
        else:
            raise ProfileError('task_struct has neither pid_links nor pids')
        heads = kernel.struct('pid').member('tasks')
        self.pid_tasks = heads['offset'] + pid_pid * heads['elem_size']
        namespace = kernel.struct('pid_namespace')
        if not namespace.has('idr'):
            raise ProfileError('pid_namespace has no idr (a pid_hash kernel, before 4.15)')
        idr = kernel.struct('idr').member('idr_rt')
        if idr.get('type') != 'xarray':
            raise ProfileError('the IDR is a %s, not an xarray (a kernel before 4.20)'
                               % idr.get('type'))
        self.pid_xarray = namespace.offset('idr') + idr['offset']


class XArrayLayout:
    """``struct xa_node`` as the walk needs it: shift, slots, and the chunk size."""

    def __init__(self, kernel):
        self.head = kernel.struct('xarray').offset('xa_head')
        node = kernel.struct('xa_node')
        self.shift = node.offset('shift')
        slots = node.member('slots')
        count = slots['count']
        if slots['elem_size'] != 8 or count < 2 or count & (count - 1):
            raise ProfileError('xa_node.slots is not a power-of-two array of pointers')
        self.slots = slots['offset']
        self.chunk_shift = count.bit_length() - 1        # XA_CHUNK_SHIFT: 6, or 4
        self.span = max(self.slots + 8 * count, self.shift + 1)
        self.unpack_slots = struct.Struct('<%dQ' % count).unpack_from
        self.max_shift = (MAX_INDEX_BITS // self.chunk_shift) * self.chunk_shift


def xarray_entries(kernel, xarray, layout, max_nodes=None):
    """Yield ``(index, entry, slot address)`` for each pointer stored in an xarray.

    Value, sibling, retry and zero entries are skipped.  Each node's shift must be its
    parent's less one chunk (a node a reader reaches through RCU keeps its shift, so
    this holds on a live guest too); a node reached twice, more than ``max_nodes``
    nodes, or an implausible root shift raise GuestDataError.
    """
    max_nodes = max_nodes or MAX_XA_NODES
    head_addr = xarray + layout.head
    head = kernel.u64(head_addr)
    if not head:
        return
    if head & 3 != _INTERNAL or head <= _NODE_MIN:
        if not head & 3:
            yield 0, head, head_addr                  # a lone entry at index 0
        return
    root = head - _INTERNAL
    shift = kernel.read(root + layout.shift, 1)[0]
    if shift % layout.chunk_shift or shift > layout.max_shift:
        raise GuestDataError('xarray at 0x%x: root node 0x%x has shift %d'
                             % (xarray, root, shift))
    stack, seen, chunk = [(root, shift, 0)], {root}, layout.chunk_shift
    while stack:
        node, shift, base = stack.pop()
        data = kernel.read(node, layout.span)
        if data[layout.shift] != shift:
            raise GuestDataError('xarray at 0x%x: node 0x%x has shift %d, expected %d'
                                 % (xarray, node, data[layout.shift], shift))
        slots = layout.unpack_slots(data, layout.slots)
        children = []
        for i, entry in enumerate(slots):
            if not entry:
                continue
            index = base + (i << shift)
            if entry & 3 == _INTERNAL:
                if entry <= _NODE_MIN:
                    continue                          # sibling, retry or zero entry
                child = entry - _INTERNAL
                if not shift:
                    raise GuestDataError('xarray at 0x%x: leaf node 0x%x links node 0x%x'
                                         % (xarray, node, child))
                if child in seen:
                    raise GuestDataError('xarray at 0x%x: node 0x%x is reached twice'
                                         % (xarray, child))
                if len(seen) >= max_nodes:
                    raise GuestDataError('xarray at 0x%x has more than %d nodes'
                                         % (xarray, max_nodes))
                seen.add(child)
                children.append((child, shift - chunk, index))
            elif not entry & 1:
                yield index, entry, node + layout.slots + 8 * i
        stack.extend(reversed(children))        # lowest index next: entries in order


def pid_tasks(kernel, pid, links):
    """The tasks on a ``struct pid``'s PIDTYPE_PID hlist (one, or none)."""
    node = kernel.u64(pid + links.pid_tasks)
    found = []
    while node:
        if len(found) >= MAX_PID_TASKS:
            raise GuestDataError('pid 0x%x lists more than %d tasks' % (pid, MAX_PID_TASKS))
        task = node - links.pid_link
        if task in found:
            raise GuestDataError('pid 0x%x: task list loops at 0x%x' % (pid, node))
        found.append(task)
        node = kernel.u64(node)
    return found


def pid_table(kernel):
    """``{pid number: [task addresses]}``: where the initial PID namespace leads."""
    links = kernel.memo(PidLinks)
    xarray = kernel.symbol('init_pid_ns') + links.pid_xarray
    layout = kernel.memo(XArrayLayout)
    found = {}
    for index, pid, _ in xarray_entries(kernel, xarray, layout):
        tasks = pid_tasks(kernel, pid, links)
        if tasks:
            found[index] = tasks
    return found


def thread_group(kernel, links, leader, signal):
    """The tasks of one thread group: the leader's signal's list, or its thread ring."""
    if links.thread_head is None:
        return [leader] + list(kernel.walk_list(leader + links.thread_link,
                                                links.thread_link, MAX_TASKS))
    if not signal:
        return []
    return list(kernel.walk_list(signal + links.thread_head, links.thread_link, MAX_TASKS))


class TaskViews:
    """Every task the chosen views show: ``views``, ``fields`` and ``leaders`` by address.

    ``fields`` are ``TaskFields.parse`` tuples; ``pid_entries`` is what ``pid_table``
    returned (None when that view did not run).
    """

    def __init__(self, kernel, with_pid_table=True):
        fields = kernel.memo(TaskFields)
        links = kernel.memo(TaskLinks)
        self.init_task = kernel.symbol('init_task')
        self.views, self.fields, self.leaders = {}, {}, {}
        for task, parsed in task_list(kernel, fields):
            self._add(task, VIEW_LIST, parsed)
        self.pid_entries = pid_table(kernel) if with_pid_table else None
        for tasks in (self.pid_entries or {}).values():
            for task in tasks:
                self._add(task, VIEW_PIDS)
        signals, todo = set(), list(self.views)
        while todo:
            task = todo.pop()
            if task not in self.fields:
                self.fields[task] = fields.parse(kernel.read(task + fields.start,
                                                             fields.span))
            leader, signal = links.leader_and_signal(kernel, task)
            self.leaders[task] = leader
            key = signal if links.thread_head is not None else leader
            if key in signals:
                continue
            signals.add(key)
            for member in thread_group(kernel, links, leader, signal):
                if member != self.init_task and member not in self.views:
                    todo.append(member)
                self._add(member, VIEW_THREADS)

    def _add(self, task, view, parsed=None):
        if task == self.init_task:
            return              # the idle task: the list's head, in no PID table
        views = self.views.get(task)
        if views is None:
            if len(self.views) >= MAX_TASKS:
                raise GuestDataError('more than %d tasks across the views' % MAX_TASKS)
            views = self.views[task] = set()
        views.add(view)
        if parsed is not None:
            self.fields[task] = parsed

    def __iter__(self):
        """``(address, parsed fields, views)`` in pid order."""
        order = sorted(self.views, key=lambda t: (self.fields[t][0], t))
        return ((t, self.fields[t], self.views[t]) for t in order)


class HiddenTasks(Probe):
    name = 'hidden_tasks'
    structs = ('task_struct', 'cred', 'list_head', 'pid', 'pid_namespace', 'idr',
               'xarray', 'xa_node', 'signal_struct', 'hlist_node', 'hlist_head')
    enums = ('pid_type',)
    symbols = ('init_task', 'init_pid_ns')

    def run(self, kernel):
        views = TaskViews(kernel)
        findings = _suspects(views)
        if findings:
            # Confirm on a second reading: a fork or an exit between the walks is gone
            # by then, a hidden task is not.
            views = TaskViews(kernel)
            again = _suspects(views)
            findings = {key: again[key] for key in findings.keys() & again.keys()}
        records = [{'pid': f[0], 'tgid': f[1], 'comm': f[6], 'task': '0x%x' % task,
                    'views': sorted(seen)} for task, f, seen in views]
        return ProbeResult(records=records,
                           findings=[findings[k] for k in sorted(findings)])


def _suspects(views):
    """``{(pid, task): Finding}`` for the tasks a view misses that it should show."""
    hidden_leaders = {task for task, _, seen in views
                      if VIEW_LIST not in seen and views.leaders[task] == task}
    out = {}
    for task, f, seen in views:
        leader = views.leaders[task]
        evidence = {'pid': f[0], 'tgid': f[1], 'comm': f[6], 'task': '0x%x' % task,
                    'views': sorted(seen)}
        if task in hidden_leaders:
            summary = ('process %d (%s) is not on the task list but the %s shows it'
                       % (f[0], f[6], ' and '.join(sorted(seen))))
            out[f[0], task] = Finding('hidden_task', 'high', summary, evidence)
        elif (VIEW_LIST not in seen and leader not in hidden_leaders
              and VIEW_LIST not in views.views.get(leader, ())):
            evidence['group_leader'] = '0x%x' % leader
            summary = ('thread %d (%s) belongs to no process on the task list'
                       % (f[0], f[6]))
            out[f[0], task] = Finding('hidden_task', 'high', summary, evidence)
        elif views.pid_entries is not None and VIEW_PIDS not in seen:
            evidence['unreachable_by_pid'] = True
            evidence['pid_table_entry'] = ['0x%x' % t
                                           for t in views.pid_entries.get(f[0], ())]
            summary = ('task %d (%s) is unreachable by pid: the PID table does not lead '
                       'to it' % (f[0], f[6]))
            out[f[0], task] = Finding('hidden_task', 'medium', summary, evidence)
    return out
