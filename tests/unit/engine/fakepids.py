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

"""A :class:`FakeKernel` with a PID table, thread groups and full credentials.

``hidden_tasks`` and ``creds`` read more of a task than ``pslist`` does: its group
leader, its ``signal_struct`` thread list, its ``pid_links``, both cred pointers, all
the ids in a cred, and the executable behind its mm; and the ``init_pid_ns`` IDR, an
xarray of ``struct pid``.  This helper wraps a FakeKernel (same image, page tables, heap
and task-list offsets), lays those structures out with a profile of its own, and builds
the xarray the way ``lib/xarray.c`` shapes it, so that tests can then break it.
"""

import struct

from tests.unit.engine import fakekernel
from tests.unit.engine.fakekernel import FakeKernel
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.linux.profile import Profile
from vmi_agent.engine.linux.symbols import SymbolTable
from vmi_agent.engine.memory import RamFile

SYMBOLS = dict(fakekernel.SYMBOLS, init_pid_ns=0x6000, init_cred=0x7000)

# task_struct: pslist's fields where FakeKernel puts them, then the links.
T_FLAGS, T_TASKS, T_PID, T_PARENT, T_CRED, T_MM, T_COMM = 0x04, 0x10, 0x20, 0x28, 0x30, \
    0x38, 0x40
T_LEADER, T_SIGNAL, T_REAL_CRED, T_THREAD_NODE = 0x50, 0x58, 0x60, 0x68
T_PID_LINKS, T_THREAD_PID, T_THREAD_GROUP = 0x78, 0xb8, 0xc0
TASK_SIZE = 0xd0
PID_TASKS, PID_NR, PID_SIZE = 0x10, 0x30, 0x40
SIG_THREAD_HEAD, SIG_SUBREAPER, SIG_SIZE = 0x10, 0x20, 0x40
XA_SLOTS, XA_NODE_SIZE, XA_HEAD = 40, 576, 8
CRED_SIZE, CRED_KEYRING = 0x40, 0x30
IDS = ('uid', 'gid', 'suid', 'sgid', 'euid', 'egid', 'fsuid', 'fsgid')
MM_EXE, FILE_INODE = 0x10, 0x20
S_IFREG = 0o100000
PF_KTHREAD = 0x00200000


def _m(offset, size, kind='int', **extra):
    return dict(offset=offset, size=size, kind=kind, **extra)


def layouts(old_threads=False, old_pid_links=False, radix_idr=False):
    """The profile's layouts; the flags give shapes of older kernels."""
    task = dict(fakekernel.TASK['members'])
    task.update({
        'group_leader': _m(T_LEADER, 8, 'ptr', target='task_struct'),
        'signal': _m(T_SIGNAL, 8, 'ptr', target='signal_struct'),
        'real_cred': _m(T_REAL_CRED, 8, 'ptr', target='cred'),
        'thread_node': _m(T_THREAD_NODE, 16, 'struct', type='list_head'),
        'pid_links': _m(T_PID_LINKS, 64, 'array', count=4, elem_size=16,
                        elem_kind='struct', elem_type='hlist_node'),
        'thread_pid': _m(T_THREAD_PID, 8, 'ptr', target='pid'),
        'thread_group': _m(T_THREAD_GROUP, 16, 'struct', type='list_head'),
    })
    signal = {'nr_threads': _m(8, 4),
              'thread_head': _m(SIG_THREAD_HEAD, 16, 'struct', type='list_head'),
              'is_child_subreaper': _m(SIG_SUBREAPER, 4, bit_offset=0, bit_size=1),
              'has_child_subreaper': _m(SIG_SUBREAPER, 4, bit_offset=1, bit_size=1)}
    extra = {}
    if old_threads:                   # Linux 6.7+ has no thread_group; 3.13- no thread_node
        del task['thread_node'], signal['thread_head']
    if old_pid_links:                 # before 4.19: struct pid_link pids[PIDTYPE_MAX]
        del task['pid_links']
        task['pids'] = _m(T_PID_LINKS, 64, 'array', count=4, elem_size=16,
                          elem_kind='struct', elem_type='pid_link')
        extra['pid_link'] = {'size': 16, 'members': {
            'node': _m(0, 16, 'struct', type='hlist_node')}}
    idr_type = 'radix_tree_root' if radix_idr else 'xarray'
    out = dict(fakekernel.LAYOUTS)
    out.update(extra)
    out.update({
        'task_struct': {'size': TASK_SIZE, 'members': task},
        'cred': {'size': CRED_SIZE, 'members': dict(
            {name: _m(8 + 4 * i, 4, 'struct') for i, name in enumerate(IDS)},
            session_keyring=_m(CRED_KEYRING, 8, 'ptr', target='key'))},
        'signal_struct': {'size': SIG_SIZE, 'members': signal},
        'pid': {'size': PID_SIZE, 'members': {
            'level': _m(4, 4),
            'tasks': _m(PID_TASKS, 32, 'array', count=4, elem_size=8, elem_kind='struct',
                        elem_type='hlist_head'),
            'numbers': _m(PID_NR, 0, 'array', count=0, elem_size=16, elem_kind='struct',
                          elem_type='upid')}},
        'upid': {'size': 16, 'members': {'nr': _m(0, 4), 'ns': _m(8, 8, 'ptr')}},
        'pid_namespace': {'size': 0x40, 'members': {
            'idr': _m(0, 24, 'struct', type='idr')}},
        'idr': {'size': 24, 'members': {'idr_rt': _m(0, 16, 'struct', type=idr_type),
                                        'idr_base': _m(16, 4)}},
        'xarray': {'size': 16, 'members': {'xa_head': _m(XA_HEAD, 8, 'ptr')}},
        'xa_node': {'size': XA_NODE_SIZE, 'members': {
            'shift': _m(0, 1), 'offset': _m(1, 1), 'count': _m(2, 1),
            'parent': _m(8, 8, 'ptr', target='xa_node'),
            'slots': _m(XA_SLOTS, 512, 'array', count=64, elem_size=8, elem_kind='ptr')}},
        'hlist_node': {'size': 16, 'members': {'next': _m(0, 8, 'ptr'),
                                               'pprev': _m(8, 8, 'ptr')}},
        'hlist_head': {'size': 8, 'members': {'first': _m(0, 8, 'ptr')}},
        'mm_struct': {'size': 0x40, 'members': {'exe_file': _m(MM_EXE, 8, 'ptr')}},
        'file': {'size': 0x40, 'members': {'f_inode': _m(FILE_INODE, 8, 'ptr')}},
        'inode': {'size': 0x40, 'members': {'i_mode': _m(0, 2), 'i_uid': _m(4, 4, 'struct')}},
    })
    return out


ENUMS = dict(fakekernel.ENUMS, pid_type={'PIDTYPE_PID': 0, 'PIDTYPE_TGID': 1,
                                         'PIDTYPE_PGID': 2, 'PIDTYPE_SID': 3,
                                         'PIDTYPE_MAX': 4})


class FakePids:
    """A synthetic kernel whose tasks are reachable through all of the kernel's indexes.

    ``process()`` and ``thread()`` add tasks; ``attach()`` builds the PID table's xarray
    from the pids given so far (unless ``build_idr()`` was called already, so that a
    test can corrupt it) and returns a LinuxKernel.
    """

    def __init__(self, **shape):
        self.k = k = FakeKernel()
        self.g = k.g
        self.shape = shape
        self.pids = {}                       # pid number -> struct pid address
        self.xa_nodes = []                   # (address, shift, base) as built
        self.init_task = k.init_task
        self.init_cred = self.sym('init_cred')
        self.init_pid_ns = self.sym('init_pid_ns')
        self._idr_built = False
        root = self.cred(0)
        self._links(self.init_task, self.init_task, root, root, kthread=True)

    def sym(self, name):
        return fakekernel.TEXT_LINK + self.k.shift + SYMBOLS[name]

    # -- memory ---------------------------------------------------------------------------
    def alloc(self, size):
        return self.k.dm(self.k.alloc(size))

    def w64(self, vaddr, value):
        self.g.vu64(vaddr, value)

    def empty_list(self, head):
        self.w64(head, head)
        self.w64(head + 8, head)

    def r64(self, vaddr):
        return self.k.read_v64(vaddr)

    def w32(self, vaddr, value):
        struct.pack_into('<I', self.g.ram, self.g.vaddr_to_paddr(vaddr), value)

    # -- credentials and executables -------------------------------------------------------
    def cred(self, uid, euid=None, suid=None, fsuid=None, gid=None, keyring=0):
        """A cred; ids default to ``uid`` (and gids to ``gid``, else to ``uid``)."""
        euid = uid if euid is None else euid
        gid = uid if gid is None else gid
        ids = dict(uid=uid, euid=euid, suid=euid if suid is None else suid,
                   fsuid=euid if fsuid is None else fsuid, gid=gid, egid=gid, sgid=gid,
                   fsgid=gid)
        cred = self.alloc(CRED_SIZE)
        for i, name in enumerate(IDS):
            self.w32(cred + 8 + 4 * i, ids[name])
        self.w64(cred + CRED_KEYRING, keyring)
        return cred

    def exe(self, mode=0o755, uid=0):
        """An mm whose exe_file's inode has ``mode`` (S_IFREG added) and owner ``uid``."""
        mm, file, inode = self.alloc(0x40), self.alloc(0x40), self.alloc(0x40)
        self.w64(mm + MM_EXE, file)
        self.w64(file + FILE_INODE, inode)
        struct.pack_into('<H', self.g.ram, self.g.vaddr_to_paddr(inode), S_IFREG | mode)
        self.w32(inode + 4, uid)
        return mm

    # -- tasks ----------------------------------------------------------------------------
    def _links(self, task, leader, cred, real_cred, kthread=False):
        """group_leader, real_cred, flags; a new signal_struct for a leader."""
        self.w64(task + T_LEADER, leader)
        self.w64(task + T_REAL_CRED, real_cred)
        self.w64(task + T_CRED, cred)
        self.w32(task + T_FLAGS, PF_KTHREAD if kthread else 0)
        if task == leader:
            signal = self.alloc(SIG_SIZE)
            self.empty_list(signal + SIG_THREAD_HEAD)
            self.empty_list(task + T_THREAD_GROUP)
        else:
            signal = self.r64(leader + T_SIGNAL)
            self.k.list_add_tail(leader + T_THREAD_GROUP, task + T_THREAD_GROUP)
        self.w64(task + T_SIGNAL, signal)
        self.k.list_add_tail(signal + SIG_THREAD_HEAD, task + T_THREAD_NODE)

    def _task(self, pid, tgid, comm, parent, cred, real_cred, mm, kthread):
        task = self.alloc(TASK_SIZE)
        p = self.g.vaddr_to_paddr(task)
        struct.pack_into('<ii', self.g.ram, p + T_PID, pid, tgid)
        struct.pack_into('<QQQ', self.g.ram, p + T_PARENT, parent, cred, mm)
        self.g.ram[p + T_COMM:p + T_COMM + 16] = comm.encode()[:15].ljust(16, b'\0')
        self.attach_pid(task, pid)
        return task

    def process(self, pid, comm, parent=None, cred=None, real_cred=None, mm=0,
                kthread=False):
        """A thread-group leader on the task list and in the PID table."""
        cred = cred or self.cred(0)
        real_cred = real_cred or cred
        task = self._task(pid, pid, comm, parent or self.init_task, cred, real_cred, mm,
                          kthread)
        self._links(task, task, cred, real_cred, kthread)
        self.k.list_add_tail(self.init_task + T_TASKS, task + T_TASKS)
        return task

    def thread(self, leader, pid, comm=None, cred=None, real_cred=None):
        """A thread of ``leader``'s group: in the PID table, not on the task list."""
        p = self.g.vaddr_to_paddr(leader)
        tgid, = struct.unpack_from('<i', self.g.ram, p + T_PID)
        if comm is None:
            comm = bytes(self.g.ram[p + T_COMM:p + T_COMM + 16]).rstrip(b'\0').decode()
        parent, leader_cred, mm = struct.unpack_from('<QQQ', self.g.ram, p + T_PARENT)
        cred = cred or leader_cred
        real_cred = real_cred or cred
        task = self._task(pid, tgid, comm, parent, cred, real_cred, mm, False)
        self._links(task, leader, cred, real_cred)
        return task

    def attach_pid(self, task, nr):
        """A struct pid for ``nr`` whose PIDTYPE_PID hlist holds ``task``."""
        pid = self.alloc(PID_SIZE)
        self.w32(pid + PID_NR, nr)
        self.w64(pid + PID_NR + 8, self.init_pid_ns)
        self.w64(pid + PID_TASKS, task + T_PID_LINKS)
        self.w64(task + T_PID_LINKS, 0)
        self.w64(task + T_PID_LINKS + 8, pid + PID_TASKS)
        self.w64(task + T_THREAD_PID, pid)
        self.pids[nr] = pid
        return pid

    # -- what rootkits do -----------------------------------------------------------------
    def unlink(self, task, offset=T_TASKS):
        """``list_del`` without poisoning: the neighbours forget the task."""
        nxt, prev = self.r64(task + offset), self.r64(task + offset + 8)
        self.w64(prev, nxt)
        self.w64(nxt + 8, prev)

    def make_subreaper(self, task):
        """prctl(PR_SET_CHILD_SUBREAPER) on the task's process."""
        signal = self.r64(task + T_SIGNAL)
        self.g.ram[self.g.vaddr_to_paddr(signal + SIG_SUBREAPER)] |= 1

    def detach_pid(self, task):
        """Empty the task's pid's PIDTYPE_PID hlist: the pid no longer leads to it."""
        self.w64(self.r64(task + T_THREAD_PID) + PID_TASKS, 0)

    # -- the PID table ----------------------------------------------------------------------
    def build_idr(self, entries=None):
        """Write ``init_pid_ns.idr`` as an xarray of ``entries`` ({index: pid address})."""
        entries = dict(self.pids if entries is None else entries)
        self._idr_built = True
        head = self.init_pid_ns + XA_HEAD
        if not entries:
            self.w64(head, 0)
            return
        shift = 0
        while max(entries) >> (shift + 6):
            shift += 6
        root = self._node(entries, shift, 0, 0, 0)
        self.w64(head, root | 2)

    def _node(self, entries, shift, base, parent, offset):
        node = self.alloc(XA_NODE_SIZE)
        self.xa_nodes.append((node, shift, base))
        p = self.g.vaddr_to_paddr(node)
        self.g.ram[p] = shift
        self.g.ram[p + 1] = offset
        self.w64(node + 8, parent)
        count = 0
        for slot in range(64):
            lo = base + (slot << shift)
            inside = {i: e for i, e in entries.items() if lo <= i < lo + (1 << shift)}
            if not inside:
                continue
            count += 1
            if shift == 0:
                value = inside[lo]
            else:
                value = self._node(inside, shift - 6, lo, node, slot) | 2
            self.w64(node + XA_SLOTS + 8 * slot, value)
        self.g.ram[p + 2] = count
        return node

    def slot_of(self, index):
        """Virtual address of the leaf slot holding ``index``."""
        for node, shift, base in self.xa_nodes:
            if shift == 0 and base <= index < base + 64:
                return node + XA_SLOTS + 8 * (index - base)
        raise KeyError(index)

    def profile(self):
        symbols = SymbolTable([(fakekernel.TEXT_LINK + off, 'D', name)
                               for name, off in SYMBOLS.items()])
        return Profile('6.1.0-fake', fakekernel.BANNER, None, symbols,
                       layouts(**self.shape), ENUMS)

    def attach(self, tmp_path):
        if not self._idr_built:
            self.build_idr()
        memory = RamFile(self.g.save(tmp_path / 'ram'))
        prof = self.profile()
        return LinuxKernel(memory, prof, locate(memory, prof))
