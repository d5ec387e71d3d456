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

"""``syscalls``: is every system call table entry a system call handler of the kernel?

The classic rootkit hook (Diamorphine, Reptile's older versions, most of the
Volatility-era corpus) rewrites a ``sys_call_table`` slot to point at its own code.
Each entry of ``sys_call_table``, and of ``ia32_sys_call_table`` and
``x32_sys_call_table`` where the kernel has them, must be the start of a function that
kallsyms knows inside the kernel's text (``_stext``..``_etext``).  Anything else is a
``syscall_hook`` finding:

- critical: the entry points into a module's memory, or outside kernel text (the
  evidence names the module and its region when there is one);
- high: inside kernel text, but not at a function start (a gadget, a mid-function
  jump);
- medium: at a kernel function start whose name is not a system call handler's
  (``*sys_*``, or ``stub_*``/``ptregs_*`` of older kernels): a swapped or re-used
  handler.

Note that Linux 6.9+, and the stable kernels that took the backport of that change
(April 2024; Debian's 6.1.19x among them), no longer dispatch through the table:
``do_syscall_64`` calls ``x64_sys_call()``, a switch compiled into kernel text, and the
table is kept for tracing and audit.  Patching it is therefore what *older*
rootkits do and, on such kernels, no longer diverts system calls; a hook of the new
dispatch is a change of kernel text, which ``kernel_text`` reports.  The table itself is
read-only data, so ``kernel_text`` also sees it change.

The tables' length comes from the symbol table: a table ends where the next symbol
begins, less the zero padding before it (the kernel's BTF holds no sizes for these
variables: pahole only encodes per-CPU variables), and never more than
:data:`MAX_ENTRIES` entries.
"""

import struct

from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.probes.kernel_code import (
    KernelCode, ModuleMap, describe, format_symbol, hexaddr, off_text_severity)

TABLES = ('sys_call_table', 'ia32_sys_call_table', 'x32_sys_call_table')
#: Far above any real table (x86-64 has about 460 system calls; x32's table as many).
MAX_ENTRIES = 2048
#: kallsyms names a system call handler may have, across kernel versions.
HANDLER_PREFIXES = ('stub_', 'ptregs_')


def is_handler_name(name):
    return 'sys_' in name or name.startswith(HANDLER_PREFIXES)


def table_length(kernel, start):
    """Entries of the table at ``start`` up to the next symbol, padding included."""
    count = 0
    while count < MAX_ENTRIES:
        last = start + count * 8 + 7
        found = kernel.symbol_at(last)
        if found is None or last - found[1] != start:     # another symbol began
            break
        count += 1
    return count


def _entries(raw):
    entries = list(struct.unpack('<%dQ' % (len(raw) // 8), raw))
    while entries and entries[-1] == 0:
        entries.pop()
    return entries


def table_entries(kernel, start):
    """The entries of the table at ``start``: up to the next symbol, padding dropped."""
    return _entries(kernel.read(start, table_length(kernel, start) * 8))


class SyscallTables:
    """The tables of this kernel build, and what the last run derived from their bytes.

    A table's place and length depend on the symbol table only, so they are found once
    per kernel.  Whether an entry is a handler depends only on the address it holds and
    the symbol table, so a table whose bytes are exactly those of the previous run has
    the same records and the same entries to report; only the evidence of those
    entries (which module holds the target) is read from the guest again.
    """

    def __init__(self, kernel):
        self.tables = []
        for table in TABLES:
            link = kernel.profile.get_address(table)
            if link is not None:
                start = link + kernel.location.shift
                self.tables.append((table, start, table_length(kernel, start)))
        self.last = {}

    def verdicts(self, kernel, code, table, raw):
        """``(records, indexes of the entries to report)`` for a table's bytes."""
        hit = self.last.get(table)
        if hit is not None and hit[0] == raw:
            return [dict(record) for record in hit[1]], hit[2]
        records, bad = [], []
        for index, target in enumerate(_entries(raw)):
            found = code.symbol(kernel, target)
            records.append({'table': table, 'index': index, 'address': hexaddr(target),
                            'symbol': format_symbol(found)})
            function = code.function_at(kernel, target)
            if function is None or not is_handler_name(function):
                bad.append((index, target))
        self.last[table] = (raw, records, bad)
        return [dict(record) for record in records], bad


class Syscalls(Probe):
    name = 'syscalls'
    structs = ('module', 'list_head')
    enums = ('module_state',)
    symbols = TABLES + ('_stext', '_etext', '_text', '_end', 'modules')

    def run(self, kernel):
        code = kernel.memo(KernelCode)
        tables = kernel.memo(SyscallTables)
        modules = ModuleMap(kernel)
        records, findings = [], []
        for table, start, count in tables.tables:
            raw = kernel.read(start, count * 8)
            table_records, bad = tables.verdicts(kernel, code, table, raw)
            records.extend(table_records)
            for index, target in bad:
                finding = self._check(kernel, code, modules, table, index, target)
                if finding is not None:
                    findings.append(finding)
        return ProbeResult(records=records, findings=findings)

    @staticmethod
    def _check(kernel, code, modules, table, index, target):
        function = code.function_at(kernel, target)
        if function is not None and is_handler_name(function):
            return None
        evidence = {'table': table, 'index': index}
        evidence.update(describe(kernel, code, modules, target))
        if function is not None:
            severity = 'medium'
            why = 'kernel function %s, which is not a system call handler' % function
        else:
            severity = off_text_severity(evidence)
            if 'module' in evidence:
                why = 'module %s (%s)' % (evidence['module'], evidence['module_region'])
            elif evidence['region'] == 'kernel text':
                why = 'the middle of %s' % (evidence['symbol'] or 'kernel text')
            else:
                why = evidence['region']
        return Finding('syscall_hook', severity,
                       '%s[%d] points to %s at %s' % (table, index, why, hexaddr(target)),
                       evidence)
