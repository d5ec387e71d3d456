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

"""Rootkit-style tampering of a live guest's kernel, and the probes that must see it.

The host plays the rootkit: one aligned 8-byte store at a time into the running
guest's RAM (``Guest.write_u64``), as a kernel-mode rootkit's own stores would land.
Each test hooks one thing (a system call table slot, an IDT gate, a byte of kernel
text), checks that the right probe names it, and restores it, checking that the
finding goes away.  The guest is this module's own (``fresh_guest``): a tampering
test that failed half-way must not leave a hooked kernel to other tests.

The baseline of ``kernel_text`` is taken at the start, on the clean guest, then the
guest works (modules loaded and unloaded, processes started and stopped, a static key
flipped through a sysctl), which rewrites jump-label sites in kernel text: those must
be recognised as the kernel's own patching, not reported.
"""

import struct
import time

import pytest

from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory
from vmi_agent.engine.probes.kernel_code import ModuleMap

HOOK_PROBES = ['syscalls', 'idt', 'kernel_text']
#: __NR_kill: Debian's 6.1 dispatches through x64_sys_call(), so a hooked slot does not
#: divert the guest's own system calls, and the guest stays healthy while hooked.
SYSCALL = 62
#: The int 0x80 gate: a classic target, and nothing in a 64-bit busybox guest uses it.
VECTOR = 0x80
#: A function nothing in the test bed calls (process accounting).
COLD_FUNCTION = '__x64_sys_acct'
SCHEDSTATS = '/proc/sys/kernel/sched_schedstats'


@pytest.fixture(scope='module')
def kernel(fresh_guest, tmp_path_factory):
    state = tmp_path_factory.mktemp('state')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('NOVA_VMI_STATE', str(state))
        with open_memory(fresh_guest.ram_path) as memory:
            kernel = attach(memory, vmlinux=fresh_guest.vmlinuz,
                            profile_dir=str(tmp_path_factory.mktemp('profiles')))
            first = run(kernel, ['kernel_text'])['kernel_text']
            assert {r['baseline'] for r in first.records} == {'created'}
            assert first.findings == []
            yield kernel


def run(kernel, names, timings=None):
    results, seconds = probes.run_probes(kernel, names)
    for name, result in results.items():
        assert result.error is None, '%s failed: %s' % (name, result.error)
    if timings is not None:
        for name, value in seconds.items():
            timings.setdefault(name, []).append(value)
    return results


def findings(results):
    return {name: [f.to_dict() for f in r.findings] for name, r in results.items()
            if r.findings}


def store_u64(guest, kernel, vaddr, value):
    """One aligned 8-byte store at a kernel virtual address, as a rootkit would do it."""
    guest.write_u64(kernel.space.translate(vaddr), value)


def load_u64(guest, kernel, vaddr):
    return struct.unpack('<Q', guest.read(kernel.space.translate(vaddr), 8))[0]


@pytest.fixture
def crc7_text(fresh_guest, kernel):
    """Start and end of the text of a freshly loaded module (unloaded afterwards)."""
    fresh_guest.insmod('crc7')
    try:
        ranges = [(s, e) for s, e, name, label in ModuleMap(kernel).ranges()
                  if name == 'crc7' and label in ('core_text', 'text')]
        assert ranges, 'crc7 has no text range'
        yield ranges[0]
    finally:
        fresh_guest.rmmod('crc7')


def test_clean_guest_that_works_has_no_hook_findings(fresh_guest, kernel):
    timings = {}
    results = run(kernel, HOOK_PROBES, timings)
    assert findings(results) == {}
    syscalls = results['syscalls'].records
    assert len(syscalls) > 400
    assert {r['table'] for r in syscalls} >= {'sys_call_table'}
    assert all(r['symbol'] and 'sys_' in r['symbol'] for r in syscalls)
    assert [r['vector'] for r in results['idt'].records] == list(range(256))
    assert {r['baseline'] for r in results['kernel_text'].records} == {'compared'}

    # Work that makes the kernel patch its own text: module load/unload, processes,
    # and a static key flipped from user space where the kernel has it.
    flipped = fresh_guest.run_status('[ -w %s ]' % SCHEDSTATS).status == 0
    for name in ('dummy', 'crc7', 'cordic'):
        fresh_guest.insmod(name)
    pids = fresh_guest.spawn('vmi-worker', 5)
    if flipped:
        fresh_guest.run('echo 1 > %s' % SCHEDSTATS)
    try:
        for name in ('dummy', 'crc7'):
            fresh_guest.rmmod(name)
        fresh_guest.stop(*pids[:3])
        for _ in range(3):
            results = run(kernel, HOOK_PROBES, timings)
            assert findings(results) == {}
        text = {r['region']: r for r in results['kernel_text'].records}
        if flipped:
            # sched_schedstats guards jump labels in the scheduler's text.
            assert text['text']['changed_pages'] > 0
            assert text['text']['patched_sites'] > 0
        assert text['rodata']['changed_pages'] == 0
    finally:
        if flipped:
            fresh_guest.run('echo 0 > %s' % SCHEDSTATS)
        fresh_guest.stop_spawned()
        if 'cordic' in fresh_guest.modules():
            fresh_guest.rmmod('cordic')
    assert findings(run(kernel, HOOK_PROBES, timings)) == {}
    print('\nprobe timings on the live guest (ms): %s' % {
        name: ['%.1f' % (v * 1000) for v in values] for name, values in timings.items()})


def test_syscall_table_slot_redirected_into_a_module(fresh_guest, kernel, crc7_text):
    slot = kernel.symbol('sys_call_table') + SYSCALL * 8
    original = load_u64(fresh_guest, kernel, slot)
    hook = crc7_text[0] + 0x10
    store_u64(fresh_guest, kernel, slot, hook)
    try:
        results = run(kernel, ['syscalls', 'kernel_text'])
    finally:
        store_u64(fresh_guest, kernel, slot, original)
    [hooked] = results['syscalls'].findings
    assert hooked.kind == 'syscall_hook' and hooked.severity == 'critical'
    assert hooked.evidence['index'] == SYSCALL
    assert hooked.evidence['table'] == 'sys_call_table'
    assert hooked.evidence['address'] == '0x%x' % hook
    assert hooked.evidence['module'] == 'crc7'
    # The table is read-only data: kernel_text sees the same store.
    [changed] = results['kernel_text'].findings
    assert changed.kind == 'kernel_text_modified' and changed.severity == 'critical'
    assert changed.evidence['region'] == 'rodata'
    assert changed.evidence['symbols'] == ['sys_call_table']
    assert findings(run(kernel, ['syscalls', 'kernel_text'])) == {}


def test_syscall_table_slot_redirected_into_the_middle_of_a_function(fresh_guest, kernel):
    slot = kernel.symbol('sys_call_table') + SYSCALL * 8
    original = load_u64(fresh_guest, kernel, slot)
    store_u64(fresh_guest, kernel, slot, original + 0x10)
    try:
        [hooked] = run(kernel, ['syscalls'])['syscalls'].findings
    finally:
        store_u64(fresh_guest, kernel, slot, original)
    assert hooked.severity == 'high' and hooked.evidence['index'] == SYSCALL
    assert hooked.evidence['symbol'].endswith('+0x10')
    assert run(kernel, ['syscalls'])['syscalls'].findings == []


def gate_low_word(original, target):
    """A gate's first 8 bytes re-pointed at ``target`` (same upper 32 address bits).

    Offset bits 0-15 and 16-31 live in those bytes; bits 32-63 are in the next 8.
    """
    return ((original & 0x0000ffffffff0000) | (target & 0xffff)
            | ((target >> 16) & 0xffff) << 48)


def test_idt_gate_redirected_into_a_module(fresh_guest, kernel, crc7_text):
    gate = kernel.symbol('idt_table') + VECTOR * 16
    original = load_u64(fresh_guest, kernel, gate)
    hook = crc7_text[0] + 0x20
    assert hook >> 32 == load_u64(fresh_guest, kernel, gate + 8) & 0xffffffff
    store_u64(fresh_guest, kernel, gate, gate_low_word(original, hook))
    try:
        results = run(kernel, ['idt'])
    finally:
        store_u64(fresh_guest, kernel, gate, original)
    [hooked] = results['idt'].findings
    assert hooked.kind == 'idt_hook' and hooked.severity == 'critical'
    assert hooked.evidence['vector'] == VECTOR
    assert hooked.evidence['address'] == '0x%x' % hook
    assert hooked.evidence['module'] == 'crc7'
    record = results['idt'].records[VECTOR]
    assert record['present'] and record['address'] == '0x%x' % hook
    assert run(kernel, ['idt'])['idt'].findings == []


def test_idt_gate_swapped_with_another_vectors_stub(fresh_guest, kernel):
    """A gate pointed at a genuine entry stub, but another vector's: still a hook."""
    gate = kernel.symbol('idt_table') + VECTOR * 16
    original = load_u64(fresh_guest, kernel, gate)
    stub = kernel.symbol('irq_entries_start') + (VECTOR + 1 - 0x20) * 8
    store_u64(fresh_guest, kernel, gate, gate_low_word(original, stub))
    try:
        [hooked] = run(kernel, ['idt'])['idt'].findings
    finally:
        store_u64(fresh_guest, kernel, gate, original)
    assert hooked.severity == 'critical' and hooked.evidence['vector'] == VECTOR
    assert hooked.evidence['symbol'].startswith('irq_entries_start+')


def _patch_bytes(guest, kernel, vaddr, data):
    """Read-modify-write of the aligned 8-byte word holding ``data`` at ``vaddr``."""
    word = vaddr & ~7
    old = load_u64(guest, kernel, word)
    raw = bytearray(struct.pack('<Q', old))
    at = vaddr - word
    assert at + len(data) <= 8
    raw[at:at + len(data)] = data
    store_u64(guest, kernel, word, struct.unpack('<Q', raw)[0])
    return word, old


def test_one_byte_of_kernel_text_patched(fresh_guest, kernel):
    target = kernel.symbol(COLD_FUNCTION) + 0x11
    byte = kernel.read(target, 1)[0]
    word, original = _patch_bytes(fresh_guest, kernel, target, bytes([byte ^ 0x5a]))
    try:
        results = run(kernel, ['kernel_text'])
    finally:
        store_u64(fresh_guest, kernel, word, original)
    [changed] = results['kernel_text'].findings
    assert changed.kind == 'kernel_text_modified' and changed.severity == 'critical'
    assert changed.evidence['symbols'] == [COLD_FUNCTION]
    assert COLD_FUNCTION in changed.summary
    assert changed.evidence['address'] == '0x%x' % target
    assert changed.evidence['old'] == '%02x' % byte
    text = {r['region']: r for r in results['kernel_text'].records}
    assert text['text']['changed_pages'] == 1
    assert run(kernel, ['kernel_text'])['kernel_text'].findings == []


def test_inline_hook_at_a_function_entry(fresh_guest, kernel, crc7_text):
    """``jmp rel32`` into a module over the entry of a function: the textbook hook."""
    entry = kernel.symbol(COLD_FUNCTION)
    assert kernel.read(entry, 5) == bytes.fromhex('0f1f440000')     # the fentry NOP
    hook = crc7_text[0] + 0x40
    jump = b'\xe9' + struct.pack('<i', hook - (entry + 5))
    word, original = _patch_bytes(fresh_guest, kernel, entry, jump)
    try:
        results = run(kernel, ['kernel_text'])
    finally:
        store_u64(fresh_guest, kernel, word, original)
    [hooked] = results['kernel_text'].findings
    assert hooked.severity == 'critical'
    assert hooked.evidence['symbol'] == COLD_FUNCTION
    assert hooked.evidence['target']['module'] == 'crc7'
    assert 'inline hook' in hooked.summary
    assert run(kernel, ['kernel_text'])['kernel_text'].findings == []


def test_function_tracing_is_at_worst_a_medium_finding(fresh_guest, kernel):
    """The kernel's own ftrace patching of a function entry is not a critical change."""
    tracing = '/sys/kernel/tracing'
    if fresh_guest.run_status('[ -d %s/events ] || mount -t tracefs nodev %s'
                              % (tracing, tracing)).status:
        pytest.skip('no tracefs in this guest')
    fresh_guest.run('echo %s > %s/set_ftrace_filter && echo function > %s/current_tracer'
                    % (COLD_FUNCTION, tracing, tracing))
    try:
        time.sleep(0.5)
        traced = run(kernel, ['kernel_text'])['kernel_text']
    finally:
        fresh_guest.run('echo nop > %s/current_tracer && echo > %s/set_ftrace_filter'
                        % (tracing, tracing))
    assert all(f.severity in ('low', 'medium') for f in traced.findings), traced.findings
    for finding in traced.findings:
        assert finding.evidence['symbol'] == COLD_FUNCTION
    text = {r['region']: r for r in traced.records}
    assert text['text']['changed_pages'] >= 1
    assert run(kernel, ['kernel_text'])['kernel_text'].findings == []
