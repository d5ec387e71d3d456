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

"""The ``syscalls`` probe on crafted memory, and :class:`CodeKernel` for the hook probes.

:class:`CodeKernel` is :class:`FakeKernel` with a kernel image that has code: text
with functions (NOP5 ``__fentry__`` sites first, like a 6.1 build), entry stubs, a
system call table, an IDT, jump-label and static-call tables, and modules whose memory
ranges are set.  ``test_idt`` and ``test_kernel_text`` use it too.
"""

import struct

from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from tests.unit.engine.fakekernel import (BANNER, ENUMS, HEAP, LAYOUTS, SYMBOLS,
                                          TEXT_LINK, FakeKernel)
from vmi_agent.engine import probes
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.linux.profile import Profile
from vmi_agent.engine.linux.symbols import SymbolTable
from vmi_agent.engine.memory import RamFile
from vmi_agent.engine.probes import syscalls

NOP5 = bytes.fromhex('0f1f440000')
NOP2 = bytes.fromhex('6690')
SYSCALL_NAMES = ('read', 'write', 'open', 'close', 'stat', 'fstat', 'lstat', 'poll')
MODULE_BASE = 0xffffffffc0000000
MODULE_TEXT = 0x2000

#: Image offsets of the code and data symbols (``T`` text, ``D`` data).
CODE = {'_stext': 0xf000, 'cold_function': 0x12000, 'vfs_read': 0x11000,
        'ftrace_caller': 0x13000, 'ftrace_call': 0x13050, 'ftrace_regs_caller': 0x13100,
        'ftrace_stub': 0x13200, '__SCT__tp_func_foo': 0x14000, 'branchy': 0x15000,
        'caller_fn': 0x16000, 'bpf_dispatcher_xdp_func': 0x17000, 'lock_user': 0x18000,
        '__entry_text_start': 0x27f00, 'asm_int80_emulation': 0x28900,
        'asm_sysvec_apic_timer_interrupt': 0x28a00, 'asm_sysvec_irq_move_cleanup': 0x28b00,
        'irq_entries_start': 0x29000, 'spurious_entries_start': 0x29700,
        'asm_common_interrupt': 0x29800, 'asm_spurious_interrupt': 0x29840,
        '__entry_text_end': 0x2a000, '_etext': 0x30000,
        'early_idt_handler_array': 0x31000}
CODE.update({'__x64_sys_' + n: 0x10000 + i * 0x40 for i, n in enumerate(SYSCALL_NAMES)})
CODE.update({'asm_exc_%d' % v: 0x29880 + v * 0x20 for v in range(32)})   # after the stubs
DATA = {'__start_rodata': 0x3f000, 'sys_call_table': 0x40000, 'vdso_mapping': 0x40080,
        'idt_descr': 0x41000, '__start___jump_table': 0x42000,
        '__start_static_call_sites': 0x43000, 'rodata_table': 0x44000,
        '__end_rodata': 0x60000, '__SCK__tp_func_foo': 0x61000, 'some_key': 0x61100,
        'idt_table': 0x70000, '_end': 0x80000}
#: Jump-label sites: (code, target) image offsets.  Three adjacent 2-byte sites at the end.
JUMPS = ((0x15010, 0x15030), (0x15020, 0x15040), (0x15050, 0x15060),
         (0x15052, 0x15070), (0x15054, 0x15080))
STATIC_CALL_SITE = 0x16010
EARLY_VECTORS = tuple(range(20, 29)) + (30, 31)
FIRST_SYSTEM_VECTOR = 236
DATA['__stop___jump_table'] = DATA['__start___jump_table'] + 16 * len(JUMPS)
DATA['__stop_static_call_sites'] = DATA['__start_static_call_sites'] + 8

MODULE_LAYOUT = {'size': 16, 'members': {
    'base': {'offset': 0, 'size': 8, 'kind': 'ptr'},
    'size': {'offset': 8, 'size': 4, 'kind': 'int'},
    'text_size': {'offset': 12, 'size': 4, 'kind': 'int'}}}


class CodeKernel(FakeKernel):
    """A FakeKernel whose image has code, tables and an IDT the hook probes read."""

    def __init__(self, shift=None, **kwargs):
        self.offsets = dict(SYMBOLS, **CODE, **DATA)
        self.layouts = dict(LAYOUTS, module_layout=MODULE_LAYOUT)
        self.enums = dict(ENUMS)
        super().__init__(**({} if shift is None else {'shift': shift}), **kwargs)
        self.path = None
        self._modules = 0
        g = self.g
        g.vwrite(self.sym('_stext'), b'\xcc' * (CODE['_etext'] - CODE['_stext']))
        for name in CODE:
            if not name.startswith(('__entry', '_etext', '_stext', 'irq_', 'spurious_',
                                    'early_', 'ftrace_call')):
                self.function(name)
        g.vwrite(self.sym('ftrace_call'), self.call(self.sym('ftrace_call'),
                                                    self.sym('ftrace_stub')))
        g.vwrite(self.sym('lock_user') + 5, bytes.fromhex('f0480fb10e'))
        tramp = self.sym('__SCT__tp_func_foo')
        g.vwrite(tramp, self.jmp(tramp, self.sym('vfs_read')) + bytes.fromhex('0fb9cc'))
        for code, target in JUMPS:
            size = 5 if code == JUMPS[0][0] else 2
            g.vwrite(self.image(code), NOP5 if size == 5 else NOP2)
        site = self.image(STATIC_CALL_SITE)
        g.vwrite(site, self.call(site, self.sym('vfs_read')))
        self._tables()
        self._idt()
        for i, name in enumerate(SYSCALL_NAMES):
            g.vu64(self.sym('sys_call_table') + i * 8, self.sym('__x64_sys_' + name))
        g.vwrite(self.sym('rodata_table'), bytes(range(256)))

    def sym(self, name):
        return TEXT_LINK + self.shift + self.offsets[name]

    def image(self, offset):
        return TEXT_LINK + self.shift + offset

    def function(self, name, body=bytes.fromhex('4889e54831c05dc3')):
        self.g.vwrite(self.sym(name), NOP5 + body + b'\x90' * 16)

    @staticmethod
    def call(site, target, opcode=0xe8):
        return bytes([opcode]) + struct.pack('<i', target - (site + 5))

    def jmp(self, site, target):
        return self.call(site, target, 0xe9)

    def _tables(self):
        g = self.g
        start = self.sym('__start___jump_table')
        for i, (code, target) in enumerate(JUMPS):
            entry = start + i * 16
            g.vwrite(entry, struct.pack('<iiq', self.image(code) - entry,
                                        self.image(target) - (entry + 4),
                                        self.sym('some_key') - (entry + 8)))
        entry = self.sym('__start_static_call_sites')
        g.vwrite(entry, struct.pack('<ii', self.image(STATIC_CALL_SITE) - entry,
                                    self.sym('__SCK__tp_func_foo') - (entry + 4)))

    def _idt(self):
        g = self.g
        irq, spurious = self.sym('irq_entries_start'), self.sym('spurious_entries_start')
        for v in range(32, 256):
            stub = irq + (v - 32) * 8 if v < FIRST_SYSTEM_VECTOR else \
                spurious + (v - FIRST_SYSTEM_VECTOR) * 8
            g.vwrite(stub, bytes([0x6a, v]) + self.jmp(stub + 2, self.sym(
                'asm_common_interrupt' if v < FIRST_SYSTEM_VECTOR else 'asm_spurious_interrupt')))
            self.gate(v, stub)
        for v in range(32):
            self.gate(v, self.sym('early_idt_handler_array') + 9 * v if v in EARLY_VECTORS
                      else self.sym('asm_exc_%d' % v))
        self.gate(0x80, self.sym('asm_int80_emulation'), dpl=3)
        self.gate(32, self.sym('asm_sysvec_irq_move_cleanup'))
        self.gate(FIRST_SYSTEM_VECTOR, self.sym('asm_sysvec_apic_timer_interrupt'))
        g.vwrite(self.sym('idt_descr'), struct.pack('<HQ', 0xfff, self.sym('idt_table')))

    def gate(self, vector, target, selector=0x10, gate_type=0xe, dpl=0, present=True):
        bits = gate_type << 8 | dpl << 13 | (0x8000 if present else 0)
        self.g.vwrite(self.sym('idt_table') + vector * 16, struct.pack(
            '<HHHHII', target & 0xffff, selector, bits, (target >> 16) & 0xffff,
            target >> 32, 0))

    def module_with_text(self, name):
        """A module whose core text is mapped at MODULE_BASE + n * 64 KiB."""
        mod = self.module(name, 0x4000)
        base = MODULE_BASE + self._modules * 0x10000
        self._modules += 1
        phys = (self.alloc(0x5000) + 0xfff) & ~0xfff
        self.g.map(base, phys, size=0x4000)
        p = self.g.vaddr_to_paddr(mod)
        struct.pack_into('<Q', self.g.ram, p + 0x80, base)
        struct.pack_into('<I', self.g.ram, p + 0x8c, MODULE_TEXT)
        self.sync()
        return base

    # -- attached guests ---------------------------------------------------------------
    def profile(self):
        symbols = SymbolTable([(TEXT_LINK + off, 'T' if name in CODE else 'D', name)
                               for name, off in self.offsets.items()])
        return Profile('6.1.0-fake', BANNER, 'fakebuild', symbols, self.layouts, self.enums)

    def attach(self, tmp_path):
        self.path = self.g.save(tmp_path / 'ram')
        memory = RamFile(self.path)
        prof = self.profile()
        return LinuxKernel(memory, prof, locate(memory, prof))

    def poke(self, vaddr, data):
        """Write guest memory after attach: the RAM file too (the kernel maps it)."""
        paddr = self.g.vaddr_to_paddr(vaddr)
        self.poke_phys(paddr, data)

    def sync(self):
        """After attach, copy all of guest RAM to the RAM file the kernel maps."""
        if self.path:
            with open(self.path, 'r+b') as f:
                f.write(self.g.ram)

    def poke_phys(self, paddr, data):
        self.g.write(paddr, data)
        if self.path:
            with open(self.path, 'r+b') as f:
                f.seek(paddr)
                f.write(data)


@pytest.fixture
def code_kernel():
    return CodeKernel()


def run(kernel, name):
    results, _ = probes.run_probes(kernel, [name])
    return results[name]


def slot(fake, index, table='sys_call_table'):
    return fake.sym(table) + index * 8


def test_clean_table_has_one_record_per_entry_and_no_findings(code_kernel, tmp_path):
    result = run(code_kernel.attach(tmp_path), 'syscalls')
    assert result.error is None and result.findings == []
    assert [r['index'] for r in result.records] == list(range(len(SYSCALL_NAMES)))
    assert result.records[1] == {'table': 'sys_call_table', 'index': 1,
                                 'address': '0x%x' % code_kernel.sym('__x64_sys_write'),
                                 'symbol': '__x64_sys_write'}


def test_entry_into_a_module_is_critical_and_names_the_module(code_kernel, tmp_path):
    base = code_kernel.module_with_text('rootkit')
    code_kernel.g.vu64(slot(code_kernel, 2), base + 0x100)
    [finding] = run(code_kernel.attach(tmp_path), 'syscalls').findings
    assert finding.kind == 'syscall_hook' and finding.severity == 'critical'
    assert finding.evidence == {'table': 'sys_call_table', 'index': 2,
                                'address': '0x%x' % (base + 0x100), 'symbol': None,
                                'region': 'module', 'module': 'rootkit',
                                'module_region': 'core_text'}
    assert 'rootkit' in finding.summary


def test_entry_into_module_data_names_the_region(code_kernel, tmp_path):
    base = code_kernel.module_with_text('rootkit')
    code_kernel.g.vu64(slot(code_kernel, 2), base + MODULE_TEXT + 8)
    [finding] = run(code_kernel.attach(tmp_path), 'syscalls').findings
    assert finding.evidence['module_region'] == 'core'


def test_entry_into_the_middle_of_a_function_is_high(code_kernel, tmp_path):
    code_kernel.g.vu64(slot(code_kernel, 3), code_kernel.sym('__x64_sys_close') + 0x10)
    [finding] = run(code_kernel.attach(tmp_path), 'syscalls').findings
    assert finding.severity == 'high'
    assert finding.evidence['symbol'] == '__x64_sys_close+0x10'
    assert finding.evidence['region'] == 'kernel text'


def test_entry_at_a_kernel_function_that_is_no_handler_is_medium(code_kernel, tmp_path):
    code_kernel.g.vu64(slot(code_kernel, 0), code_kernel.sym('vfs_read'))
    [finding] = run(code_kernel.attach(tmp_path), 'syscalls').findings
    assert finding.severity == 'medium' and 'vfs_read' in finding.summary


@pytest.mark.parametrize('value, region', [
    (0xdead000000000000, 'outside kernel and modules'),          # non-canonical
    (0xffff888000001000, 'outside kernel and modules'),          # data, not code
    (TEXT_LINK + 0x2e00000 + 0x40010, 'kernel image outside text'),   # rodata
])
def test_entry_outside_kernel_text_is_critical(code_kernel, tmp_path, value, region):
    code_kernel.g.vu64(slot(code_kernel, 4), value)
    [finding] = run(code_kernel.attach(tmp_path), 'syscalls').findings
    assert finding.severity == 'critical' and finding.evidence['region'] == region
    assert finding.evidence['index'] == 4


def test_zeroed_entry_inside_the_table_is_a_hook_padding_is_not(code_kernel, tmp_path):
    code_kernel.g.vu64(slot(code_kernel, 1), 0)
    result = run(code_kernel.attach(tmp_path), 'syscalls')
    assert len(result.records) == len(SYSCALL_NAMES)
    [finding] = result.findings
    assert finding.evidence['index'] == 1 and finding.severity == 'critical'


def test_hook_in_the_padding_after_the_table_is_reported(code_kernel, tmp_path):
    """Beyond the last real entry, up to the next symbol: a parked pointer shows."""
    code_kernel.g.vu64(slot(code_kernel, 12), 0xffff888000001000)
    result = run(code_kernel.attach(tmp_path), 'syscalls')
    assert len(result.records) == 13
    assert [f.evidence['index'] for f in result.findings] == [8, 9, 10, 11, 12]


def test_compat_tables_are_checked_where_the_kernel_has_them(tmp_path):
    fake = CodeKernel()
    fake.offsets['ia32_sys_call_table'] = 0x40100
    fake.offsets['vdso_image'] = 0x40120
    fake.g.vu64(fake.sym('ia32_sys_call_table'), fake.sym('__x64_sys_read'))
    fake.g.vu64(fake.sym('ia32_sys_call_table') + 8, fake.sym('vfs_read') + 1)
    result = run(fake.attach(tmp_path), 'syscalls')
    ia32 = [r for r in result.records if r['table'] == 'ia32_sys_call_table']
    assert len(ia32) == 2
    [finding] = result.findings
    assert finding.evidence['table'] == 'ia32_sys_call_table'
    assert finding.evidence['index'] == 1


def test_table_without_a_next_symbol_is_bounded(tmp_path):
    fake = CodeKernel()
    del fake.offsets['vdso_mapping']
    for name in [n for n, off in fake.offsets.items() if off > DATA['sys_call_table']]:
        del fake.offsets[name]
    fake.offsets['_end'] = 0x200000
    kernel = fake.attach(tmp_path)
    entries = syscalls.table_entries(kernel, fake.sym('sys_call_table'))
    assert len(entries) <= syscalls.MAX_ENTRIES


def test_corrupt_module_list_still_gives_the_finding(code_kernel, tmp_path):
    base = code_kernel.module_with_text('rootkit')
    second = code_kernel.module('other', 4096)
    code_kernel.g.vu64(second + 8, second + 8)          # a cycle after the first module
    code_kernel.g.vu64(second + 16, second + 8)
    code_kernel.g.vu64(slot(code_kernel, 2), base + 0x40)
    result = run(code_kernel.attach(tmp_path), 'syscalls')
    assert result.error is None
    [finding] = result.findings
    assert finding.evidence['module'] == 'rootkit'
    assert 'GuestDataError' in finding.evidence['module_list_error']


def test_module_memory_of_linux_6_4_and_later(tmp_path):
    """``struct module`` with ``mem[MOD_MEM_NUM_TYPES]`` instead of the two layouts."""
    fake = CodeKernel()
    members = dict(fake.layouts['module']['members'])
    del members['core_layout'], members['init_layout']
    members['mem'] = {'offset': 0xa0, 'size': 0x50, 'kind': 'array', 'count': 5,
                      'elem_size': 16, 'elem_type': 'module_memory'}
    fake.layouts['module'] = {'size': 0x100, 'members': members}
    fake.layouts['module_memory'] = {'size': 16, 'members': {
        'base': {'offset': 0, 'size': 8, 'kind': 'ptr'},
        'size': {'offset': 8, 'size': 4, 'kind': 'int'}}}
    fake.enums['mod_mem_type'] = {'MOD_TEXT': 0, 'MOD_DATA': 1, 'MOD_RODATA': 2,
                                  'MOD_RO_AFTER_INIT': 3, 'MOD_INIT_TEXT': 4,
                                  'MOD_MEM_NUM_TYPES': 5}
    mod = fake.module('newer', 0)
    p = fake.g.vaddr_to_paddr(mod)
    struct.pack_into('<QIIQI', fake.g.ram, p + 0xa0, MODULE_BASE, 0x1000, 0,
                     MODULE_BASE + 0x1000, 0x1000)
    fake.g.vu64(slot(fake, 1), MODULE_BASE + 0x1010)
    [finding] = run(fake.attach(tmp_path), 'syscalls').findings
    assert finding.evidence['module'] == 'newer'
    assert finding.evidence['module_region'] == 'data'


def test_unmapped_kernel_image_is_the_probes_error(code_kernel, tmp_path):
    kernel = code_kernel.attach(tmp_path)
    code_kernel.poke_phys(code_kernel.g.entry_slot(code_kernel.sym('sys_call_table'), 2),
                          bytes(8))
    result = run(kernel, 'syscalls')
    assert result.error.startswith('TranslationError')


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hst.lists(hst.tuples(hst.integers(0, 0x100 // 8 - 1), hst.integers(0, 2 ** 64 - 1)),
                 min_size=1, max_size=12),
       hst.lists(hst.tuples(hst.integers(0, 0x2000 - 8), hst.integers(0, 2 ** 64 - 1)),
                 max_size=6))
def test_fuzzed_table_and_modules_never_escape(tmp_path_factory, entries, heap_writes):
    """Random table entries, and random stores over the module structs."""
    fake = CodeKernel()
    fake.module_with_text('a')
    fake.module_with_text('b')
    for index, value in entries:
        fake.g.vu64(slot(fake, index), value)
    for off, value in heap_writes:
        struct.pack_into('<Q', fake.g.ram, HEAP + off, value)
    result = run(fake.attach(tmp_path_factory.mktemp('fuzz')), 'syscalls')
    assert result.error is None or not result.error.startswith('internal error')
    assert len(result.records) <= syscalls.MAX_ENTRIES
    for finding in result.findings:
        assert finding.severity in ('medium', 'high', 'critical')
