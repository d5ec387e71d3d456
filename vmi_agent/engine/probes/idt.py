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

"""``idt``: does every interrupt gate lead to the kernel's own entry code?

A rootkit that owns an interrupt vector (the ``int 0x80`` gate, the page-fault or debug
exception) sees every event on it.  This probe decodes the 256 gates of ``idt_table``
(16-byte x86-64 gate descriptors: offset 0-15, selector, IST/type/DPL/present bits,
offset 16-31, offset 32-63, reserved) and checks that each present gate points where
Linux puts gates:

- the start of a kallsyms function in kernel text, inside ``.entry.text`` when the
  kernel marks it (``asm_exc_*``, ``asm_sysvec_*``, ``asm_int80_emulation`` or
  ``entry_INT80_compat``...);
- the stub for *that* vector in ``irq_entries_start`` or ``spurious_entries_start``:
  each stub starts (after an optional ENDBR64) with ``push $vector`` (``6a <vector>``),
  so the stub is checked against the vector it serves, whatever the stub stride;
- for the 32 exception vectors only, ``early_idt_handler_array + vector * 9`` (or 13
  with IBT): vectors Linux never re-points after boot (the reserved ones, 20-31 on
  6.1) keep their early handler, whose code was freed with the init memory.

A gate elsewhere (a module, a mid-function address, a kernel function outside
``.entry.text``) is an ``idt_hook`` finding, critical, with the vector, the target, the
symbol it lands in and the module whose memory holds it.  A selector other than
``__KERNEL_CS`` or a gate type other than interrupt/trap gate is ``idt_hook`` too,
severity high.  The kernel's own IDT
descriptor ``idt_descr`` (what every CPU loads with ``lidt``; since 4.15 it points at
the read-only alias in the CPU entry area) must map to ``idt_table``'s page: if it
points at another table, that is ``idt_hook``, critical.

Not covered here: the CPUs' IDTR registers themselves.  A rootkit that executes
``lidt`` with its own table on one CPU, without touching ``idt_descr``, is visible only
in the vCPU registers, which need the hypervisor driver (no driver gives the engine
register access yet).  32-bit kernels (8-byte gates) are not covered.
"""

import struct

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.probes.kernel_code import (
    KernelCode, ModuleMap, describe, format_symbol, hexaddr)

IDT_ENTRIES = 256
GATE = struct.Struct('<HHHHII')
#: arch/x86/include/asm/segment.h: GDT_ENTRY_KERNEL_CS * 8 on x86-64.
KERNEL_CS = 0x10
GATE_TYPES = {0xe: 'interrupt', 0xf: 'trap'}
NUM_EXCEPTION_VECTORS = 32
#: EARLY_IDT_HANDLER_SIZE: 9 bytes, 13 when ENDBR64 precedes each handler (IBT).
EARLY_HANDLER_SIZES = (9, 13)
STUB_ARRAYS = ('irq_entries_start', 'spurious_entries_start')
ENDBR64 = b'\xf3\x0f\x1e\xfa'
PUSH_IMM8 = 0x6a
_DESC_PTR = struct.Struct('<HQ')
#: How far a stub array is read as one block: 256 stubs of up to 16 bytes.
MAX_STUB_BYTES = 4096


def decode_gate(raw, vector):
    """``(target, selector, type, dpl, ist, present)`` of one 16-byte gate."""
    low, selector, bits, middle, high, _ = GATE.unpack_from(raw, vector * 16)
    target = low | middle << 16 | high << 32
    return (target, selector, (bits >> 8) & 0x1f, (bits >> 13) & 3, bits & 7,
            bool(bits & 0x8000))


class Idt(Probe):
    name = 'idt'
    structs = ('module', 'list_head')
    enums = ('module_state',)
    symbols = ('idt_table', 'idt_descr', 'early_idt_handler_array', '_stext', '_etext',
               '_text', '_end', '__entry_text_start', '__entry_text_end',
               'modules') + STUB_ARRAYS

    def run(self, kernel):
        code = kernel.memo(KernelCode)
        state = kernel.memo(IdtState)
        modules = ModuleMap(kernel)
        table = kernel.symbol('idt_table')
        raw = kernel.read(table, IDT_ENTRIES * 16)
        stubs = state.stub_bytes(kernel)
        key = (raw, stubs)
        if stubs is not None and state.last is not None and state.last[0] == key:
            records, problems = state.last[1], state.last[2]
        else:
            records, problems = _verdicts(kernel, code, raw, stubs or ())
            state.last = (key, records, problems) if stubs is not None else None
        findings = []
        for vector, target, selector, gate_type, severity, why in problems:
            evidence = {'vector': vector, 'selector': hexaddr(selector),
                        'type': GATE_TYPES.get(gate_type, hex(gate_type))}
            evidence.update(describe(kernel, code, modules, target))
            findings.append(Finding('idt_hook', severity, 'IDT vector %d (0x%x) has %s'
                                    % (vector, vector, why), evidence))
        finding = _descriptor_problem(kernel, table)
        if finding is not None:
            findings.append(finding)
        return ProbeResult(records=[dict(r) for r in records], findings=findings)


class IdtState:
    """The stub arrays' extent (per kernel build) and the last run's verdicts.

    A gate's verdict depends on the gate's bytes, the symbol table and the bytes of the
    entry stub it points into, nothing else: the verdicts of a run whose IDT bytes and
    stub-array bytes are exactly the previous run's are the previous run's.  Evidence
    that names a module is read afresh.
    """

    def __init__(self, kernel):
        self.last = None
        self.arrays = []
        for name in STUB_ARRAYS:
            start = _runtime(kernel, name)
            if start is None:
                continue
            size = 8
            while size < MAX_STUB_BYTES:          # up to the next symbol, and a stub
                found = kernel.symbol_at(start + size)
                if found is None or start + size - found[1] != start:
                    break
                size += 8
            self.arrays.append((start, size + 8))

    def stub_bytes(self, kernel):
        """``((start, bytes), ...)`` of the stub arrays; None if one is unreadable."""
        try:
            return tuple((start, kernel.read(start, size)) for start, size in self.arrays)
        except VMIError:
            return None


def _verdicts(kernel, code, raw, stubs):
    """``(records, [(vector, target, selector, type, severity, why)])`` of the gates."""
    records, problems = [], []
    for vector in range(IDT_ENTRIES):
        target, selector, gate_type, dpl, ist, present = decode_gate(raw, vector)
        found = code.symbol(kernel, target)
        records.append({'vector': vector, 'present': present, 'address': hexaddr(target),
                        'symbol': format_symbol(found),
                        'type': GATE_TYPES.get(gate_type, hex(gate_type)),
                        'dpl': dpl, 'ist': ist})
        if not present:
            continue
        problem = _target_problem(kernel, code, vector, target, found, stubs)
        if problem is None:
            if selector != KERNEL_CS:
                problem = 'high', 'a selector 0x%x, not __KERNEL_CS' % selector
            elif gate_type not in GATE_TYPES:
                problem = 'high', 'gate type 0x%x, not an interrupt or trap gate' % gate_type
        if problem is not None:
            problems.append((vector, target, selector, gate_type) + problem)
    return records, problems


def _target_problem(kernel, code, vector, target, found, stubs=()):
    """None if ``target`` is where Linux points ``vector``, else ``(severity, why)``.

    The stub arrays and the early handlers are found from their own symbols' addresses,
    not from the name ``target`` resolves to, so that an alias at the same address
    changes nothing.  A target inside a stub array (no other symbol between the array's
    start and the target) must be that vector's stub, even at the array's start
    (vector 32's stub is ``irq_entries_start`` itself).
    """
    where = 'a handler at %s' % hexaddr(target)
    if found is None:
        return 'critical', where + ' outside the kernel image'
    for name in STUB_ARRAYS:
        start = _runtime(kernel, name)
        if start is not None and target - found[1] == start:     # inside the array
            if code.in_text(target) and _is_stub_for(kernel, target, vector, stubs):
                return None
            return 'critical', '%s (%s), not the entry stub of this vector' % (
                where, format_symbol(found))
    early = _runtime(kernel, 'early_idt_handler_array')
    if (early is not None and vector < NUM_EXCEPTION_VECTORS
            and target - early in [vector * size for size in EARLY_HANDLER_SIZES]):
        return None
    if found[1] == 0 and code.in_text(target):
        if code.in_entry_text(target) is False:
            return 'critical', 'handler %s, a kernel function outside the entry code' % (
                found[0])
        return None
    return 'critical', '%s (%s), not an entry point for this vector' % (
        where, format_symbol(found))


def _runtime(kernel, name):
    link = kernel.profile.get_address(name)
    return None if link is None else link + kernel.location.shift


def _is_stub_for(kernel, target, vector, stubs):
    """True when the stub at ``target`` pushes ``vector``: ``[endbr64] push $vector``."""
    if target % 8:
        return False
    try:
        head = kernel.read(target, 6)
    except VMIError:
        return False
    if head.startswith(ENDBR64):
        head = head[4:]
    return head[0] == PUSH_IMM8 and head[1] == vector


def _descriptor_problem(kernel, table):
    """A finding if ``idt_descr`` (what ``lidt`` loads) is not ``idt_table``."""
    link = kernel.profile.get_address('idt_descr')
    if link is None:
        return None
    limit, base = _DESC_PTR.unpack(kernel.read(link + kernel.location.shift,
                                               _DESC_PTR.size))
    space = kernel.space
    try:
        same = space.translate(base) == space.translate(table)
    except VMIError:
        same = False
    evidence = {'idt_descr': hexaddr(base), 'limit': hexaddr(limit),
                'idt_table': hexaddr(table)}
    if not same:
        return Finding('idt_hook', 'critical', 'the kernel IDT descriptor points at %s, '
                       'not at idt_table' % hexaddr(base), evidence)
    if limit != IDT_ENTRIES * 16 - 1:
        return Finding('idt_hook', 'medium', 'the kernel IDT descriptor has limit %s, '
                       'not 0xfff' % hexaddr(limit), evidence)
    return None
