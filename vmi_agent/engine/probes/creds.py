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

"""``creds``: tasks whose credentials no legitimate path of Linux could have given them.

The kernel exploit's payload is ``commit_creds(prepare_kernel_cred(0))``, or a direct write
of ``task->cred``, or of the ids in it.  Root daemons are ordinary, so "euid 0" alone says
nothing; what gives an escalation away is credentials that ``execve``, the ``set*id``
calls and ``override_creds`` cannot produce.  The facts the rules rest on:

- ``execve`` ends with ``suid = fsuid = euid`` (``cap_bprm_creds_from_file``), and only a
  set-uid file changes ``euid``; a set-uid-root program run by a user has ``uid`` = the
  user, ``euid = suid = fsuid = 0``.
- ``commit_creds`` sets both ``task->real_cred`` (objective: how others see the task) and
  ``task->cred`` (subjective: what the task may do); only ``override_creds`` makes them
  differ, for the span of one kernel operation.
- Kernel threads (``PF_KTHREAD``) run on copies of ``init_cred``; ``init_task`` and the
  idle tasks use it directly; no user task ever does, since ``execve`` always installs a
  fresh copy.  ``prepare_kernel_cred(NULL)`` returns a copy of ``init_cred`` (6.1; from
  6.2 an exploit passes ``&init_task``): all ids 0, and no keyrings.
- Ids are kernel ids (``kuid_t``): root of a user namespace is not uid 0 here.

The rules, for user tasks (not ``PF_KTHREAD``) on the task list and in their thread
groups (an exploit escalates the one thread it runs in); one finding of kind
``cred_escalation`` per task, at the highest severity of the rules it breaks:

``init_cred`` (critical)
    ``task->cred`` or ``task->real_cred`` is ``&init_cred`` (address equality): a
    rootkit's ``commit_creds(&init_cred)`` or a pointer write.
``subjective_root`` (high)
    ``cred != real_cred``, the subjective ``euid`` is 0, and the objective ``uid`` and
    ``euid`` are both non-zero: root only in the credentials used for access checks,
    what writing ``task->cred`` alone produces.  A user task caught inside an override
    (``access()``, an overlayfs operation running with its root mounter's credentials)
    differs from its ``real_cred`` too: ``access()`` never raises ``euid``; overlayfs
    can, which is the one known false positive (a non-root process blocked inside an
    overlay mounted by root).  Overrides that do not raise a non-root task to root are
    recorded (kind ``override``), not reported.
``setuid_without_setuid_exe`` (objective ``euid`` 0, ``uid`` non-zero)
    These are set-uid credentials.  Legitimate when the task's executable
    (``mm->exe_file->f_inode``) is set-uid and owned by root: no finding.  Otherwise
    **high** if ``suid`` is non-zero too (no ``execve`` leaves ``euid`` 0 with a
    non-zero ``suid``; only an explicit ``setresuid`` by an already privileged task can,
    or a write to the ids), else **medium** (a set-uid program that exec'd a plain one
    without dropping ``euid``, as a GTFOBins shell does, or forged ids).
``root_from_non_root_parent`` (objective ``uid`` and ``euid`` 0)
    Reported when the parent (``real_parent``) is a user task whose objective ``uid`` and
    ``euid`` are both non-zero and the task's executable is not set-uid root: the task
    became root without a set-uid exec, which is the ``commit_creds`` payload run by an
    unprivileged process.  **High** if the task has no session keyring while its parent
    has one (``prepare_kernel_cred`` drops keyrings; ``fork`` and ``execve`` keep them),
    else **medium**: ``su``-likes that exec the shell in place (busybox ``su``,
    ``doas``, ``pkexec``) leave a root shell whose parent is the user's shell.  Not
    when the parent is a child subreaper (``systemd --user``): it adopts the orphans
    of root daemons started with ``sudo``, whose real parent is gone.

Records: one per task: pid, tgid, comm, uid, euid, suid, fsuid, gid, egid (objective
credentials), ``cred`` (``init_cred``, ``same`` when cred == real_cred, else
``override``) and ``kernel_thread``.  A cred or parent pointer that cannot be read makes
the probe fail (the kernel itself would oops on it); an executable that cannot be read
counts as not set-uid, and the evidence says so.

Not covered: escalation through capabilities alone (``cap_effective`` raised, ids
untouched), LSM labels (an SELinux ``kernel_t`` user task), tasks hidden from both the
task list and their thread group (``hidden_tasks`` finds tasks off the task list), a
root process started by a non-root one through a vulnerable set-uid program (it *is* a
set-uid exec), a payload run by a process whose parent is a child subreaper (see
above), and a forged ``PF_KTHREAD`` flag on a user task.
"""

import struct

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.probes.hidden_tasks import TaskViews
from vmi_agent.engine.probes.pslist import PF_KTHREAD

#: include/uapi/linux/stat.h
S_ISUID = 0o4000
_IDS = ('uid', 'gid', 'suid', 'sgid', 'euid', 'egid', 'fsuid', 'fsgid')
_SEVERITY_RANK = {'medium': 1, 'high': 2, 'critical': 3}


class CredFields:
    """Offsets of the credential fields, and the chain from a task to its executable."""

    def __init__(self, kernel):
        task = kernel.struct('task_struct')
        cred = kernel.struct('cred')
        self.real_cred = task.offset('real_cred')
        self.flags = task.offset('flags')
        self.signal = task.offset('signal')
        signal = kernel.struct('signal_struct')
        if signal.has('is_child_subreaper'):                         # Linux 3.4+
            bit = signal.member('is_child_subreaper')
            self.subreaper = (bit['offset'], bit.get('bit_offset', 0))
        else:
            self.subreaper = None
        placed = sorted((cred.offset(name), name) for name in _IDS)
        self.ids_start = placed[0][0]
        self.ids_size = placed[-1][0] + 4 - self.ids_start
        self._ids = [(name, off - self.ids_start) for off, name in placed]
        self.keyring = (cred.offset('session_keyring')
                        if cred.has('session_keyring') else None)   # CONFIG_KEYS
        mm, file, inode = (kernel.struct(n) for n in ('mm_struct', 'file', 'inode'))
        if mm.has('exe_file') and file.has('f_inode') and inode.has('i_mode'):
            self.exe = (mm.offset('exe_file'), file.offset('f_inode'),
                        inode.offset('i_mode'), inode.offset('i_uid'))
        else:
            self.exe = None
        self.init_cred = kernel.symbol('init_cred')

    def ids(self, kernel, cred):
        """``{'uid': .., 'euid': .., ...}`` of the cred at ``cred``."""
        data = kernel.read(cred + self.ids_start, self.ids_size)
        return {name: struct.unpack_from('<I', data, off)[0] for name, off in self._ids}

    def is_subreaper(self, kernel, task):
        """Whether ``task``'s process adopts orphaned descendants (PR_SET_CHILD_SUBREAPER)."""
        if self.subreaper is None:
            return False
        offset, bit = self.subreaper
        signal = kernel.u64(task + self.signal)
        return bool(signal) and bool(kernel.read(signal + offset, 1)[0] >> bit & 1)

    def exe_mode(self, kernel, mm):
        """``(mode, owner uid)`` of the task's executable, or a reason it has none."""
        if self.exe is None:
            return 'unknown to this kernel'
        if not mm:
            return 'no mm'
        exe_file, f_inode, i_mode, i_uid = self.exe
        try:
            exe = kernel.u64(mm + exe_file)
            if not exe:
                return 'no exe_file'
            inode = kernel.u64(exe + f_inode)
            mode = struct.unpack('<H', kernel.read(inode + i_mode, 2))[0]
            return mode, kernel.u32(inode + i_uid)
        except VMIError as exc:
            return 'unreadable (%s)' % exc


class Creds(Probe):
    name = 'creds'
    structs = ('task_struct', 'cred', 'list_head', 'signal_struct', 'mm_struct', 'file',
               'inode')
    symbols = ('init_task', 'init_cred')

    def run(self, kernel):
        rules = _Rules(kernel)
        records, findings = [], []
        for task, f, _ in TaskViews(kernel, with_pid_table=False):
            record, finding = rules.judge(task, f)
            records.append(record)
            if finding is not None:
                findings.append(finding)
        return ProbeResult(records=records, findings=findings)


class _Rules:
    """The rules of the module docstring, with the reads they share cached per run."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.cf = kernel.memo(CredFields)
        self.init_task = kernel.symbol('init_task')
        self._ids, self._parents = {}, {}

    def judge(self, task, f):
        """``(record, finding or None)`` for one task."""
        kernel, cf = self.kernel, self.cf
        pid, tgid, flags, parent, cred, mm, comm = f
        real_cred = kernel.u64(task + cf.real_cred)
        obj, subj = self.ids(real_cred), self.ids(cred)
        kind = ('init_cred' if cf.init_cred in (cred, real_cred)
                else 'same' if cred == real_cred else 'override')
        kthread = bool(flags & PF_KTHREAD)
        record = {'pid': pid, 'tgid': tgid, 'comm': comm, 'uid': obj['uid'],
                  'euid': obj['euid'], 'suid': obj['suid'], 'fsuid': obj['fsuid'],
                  'gid': obj['gid'], 'egid': obj['egid'], 'cred': kind,
                  'kernel_thread': kthread}
        if kthread:
            return record, None
        broken = []
        if kind == 'init_cred':
            broken.append(('init_cred', 'critical', {
                'cred_is_init_cred': cred == cf.init_cred,
                'real_cred_is_init_cred': real_cred == cf.init_cred}))
        if cred != real_cred and subj['euid'] == 0 and obj['uid'] and obj['euid']:
            broken.append(('subjective_root', 'high', {'subjective': dict(subj)}))
        if obj['euid'] == 0 and obj['uid'] != 0:
            broken += self._setuid_rule(mm, obj)
        elif obj['euid'] == 0 and obj['uid'] == 0 and parent != self.init_task:
            broken += self._parent_rule(mm, parent, real_cred)
        if not broken:
            return record, None
        return record, _finding(task, f, cred, real_cred, obj, broken)

    def ids(self, cred):
        ids = self._ids.get(cred)
        if ids is None:
            ids = self._ids[cred] = self.cf.ids(self.kernel, cred)
        return ids

    def _exe(self, mm):
        """``(set-uid root?, evidence)`` for the task's executable."""
        exe = self.cf.exe_mode(self.kernel, mm)
        if isinstance(exe, str):
            return False, {'exe': exe}
        mode, owner = exe
        return bool(mode & S_ISUID) and owner == 0, {'exe_mode': '0%o' % mode,
                                                     'exe_uid': owner}

    def _setuid_rule(self, mm, obj):
        setuid_root, evidence = self._exe(mm)
        if setuid_root:
            return []
        return [('setuid_without_setuid_exe', 'high' if obj['suid'] else 'medium',
                 evidence)]

    def _parent_rule(self, mm, parent, real_cred):
        kernel, cf = self.kernel, self.cf
        known = self._parents.get(parent)
        if known is None:
            flags = kernel.u32(parent + cf.flags)
            parent_cred = kernel.u64(parent + cf.real_cred)
            known = self._parents[parent] = (flags, parent_cred, self.ids(parent_cred))
        flags, parent_cred, ids = known
        if flags & PF_KTHREAD or ids['uid'] == 0 or ids['euid'] == 0:
            return []
        if cf.is_subreaper(kernel, parent):
            return []           # an orphan it adopted: the real parent is gone
        setuid_root, evidence = self._exe(mm)
        if setuid_root:
            return []
        evidence.update({'parent': '0x%x' % parent, 'parent_uid': ids['uid'],
                         'parent_euid': ids['euid']})
        severity = 'medium'
        if cf.keyring is not None:                       # CONFIG_KEYS
            mine = kernel.u64(real_cred + cf.keyring)
            theirs = kernel.u64(parent_cred + cf.keyring)
            evidence.update({'session_keyring': '0x%x' % mine,
                             'parent_session_keyring': '0x%x' % theirs})
            if theirs and not mine:
                severity = 'high'
        return [('root_from_non_root_parent', severity, evidence)]


def _finding(task, f, cred, real_cred, obj, broken):
    pid, tgid, comm = f[0], f[1], f[6]
    severity = max((s for _, s, _ in broken), key=_SEVERITY_RANK.get)
    evidence = {'pid': pid, 'tgid': tgid, 'comm': comm, 'task': '0x%x' % task,
                'cred': '0x%x' % cred, 'real_cred': '0x%x' % real_cred,
                'rules': [name for name, _, _ in broken], 'ids': dict(obj)}
    for _, _, extra in broken:
        evidence.update(extra)
    summary = 'task %d (%s) has credentials no legitimate path gives: %s' % (
        pid, comm, ', '.join(name for name, _, _ in broken))
    return Finding('cred_escalation', severity, summary, evidence)
