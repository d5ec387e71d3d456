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

"""The ``idt`` probe on a crafted IDT (see :class:`CodeKernel` for its layout)."""

import struct

from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from tests.unit.engine.test_syscalls import EARLY_VECTORS, CodeKernel
from vmi_agent.engine import probes
from vmi_agent.engine.probes.idt import decode_gate


@pytest.fixture
def fake():
    return CodeKernel()


def run(kernel):
    results, _ = probes.run_probes(kernel, ['idt'])
    return results['idt']


def test_clean_idt_gives_256_records_and_no_findings(fake, tmp_path):
    result = run(fake.attach(tmp_path))
    assert result.error is None and result.findings == []
    assert len(result.records) == 256
    assert result.records[0] == {'vector': 0, 'present': True,
                                 'address': '0x%x' % fake.sym('asm_exc_0'),
                                 'symbol': 'asm_exc_0', 'type': 'interrupt', 'dpl': 0,
                                 'ist': 0}
    assert result.records[0x80]['dpl'] == 3
    assert result.records[40]['symbol'] == 'irq_entries_start+0x40'
    assert result.records[20]['symbol'] == 'early_idt_handler_array+0xb4'


def test_decode_gate_reassembles_the_offset():
    raw = bytes(16 * 3) + struct.pack('<HHHHII', 0x3344, 0x10, 0x8f00 | 2, 0x1122,
                                      0xffffffff, 0)
    assert decode_gate(raw, 3) == (0xffffffff11223344, 0x10, 0xf, 0, 2, True)


def test_gate_into_a_module_is_critical(fake, tmp_path):
    base = fake.module_with_text('rootkit')
    fake.gate(0x80, base + 0x30, dpl=3)
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.kind == 'idt_hook' and finding.severity == 'critical'
    assert finding.evidence['vector'] == 0x80
    assert finding.evidence['module'] == 'rootkit'
    assert finding.evidence['address'] == '0x%x' % (base + 0x30)


@pytest.mark.parametrize('stub_of, symbol', [(41, 'irq_entries_start+0x48'),
                                             (32, 'irq_entries_start'),
                                             (237, 'spurious_entries_start+0x8')])
def test_gate_to_another_vectors_stub_is_critical(fake, tmp_path, stub_of, symbol):
    if stub_of < 236:
        stub = fake.sym('irq_entries_start') + (stub_of - 32) * 8
    else:
        stub = fake.sym('spurious_entries_start') + (stub_of - 236) * 8
    fake.gate(40, stub)
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'critical' and finding.evidence['vector'] == 40
    assert finding.evidence['symbol'] == symbol


def test_gate_into_the_middle_of_a_stub_is_critical(fake, tmp_path):
    fake.gate(40, fake.sym('irq_entries_start') + (40 - 32) * 8 + 2)
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'critical'


def test_stub_whose_push_was_rewritten_is_critical(fake, tmp_path):
    stub = fake.sym('irq_entries_start') + (50 - 32) * 8
    fake.g.vwrite(stub, bytes([0x6a, 51]))
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.evidence['vector'] == 50


def test_gate_at_a_kernel_function_outside_the_entry_code_is_critical(fake, tmp_path):
    fake.gate(3, fake.sym('vfs_read'))
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'critical' and 'vfs_read' in finding.summary


def test_early_handler_is_accepted_only_for_its_own_exception_vector(fake, tmp_path):
    early = fake.sym('early_idt_handler_array')
    fake.gate(21, early + 9 * 22)          # another vector's early handler
    fake.gate(40, early + 9 * 40)          # not an exception vector
    findings = run(fake.attach(tmp_path)).findings
    assert sorted(f.evidence['vector'] for f in findings) == [21, 40]
    assert all(f.severity == 'critical' for f in findings)
    assert EARLY_VECTORS[0] == 20


@pytest.mark.parametrize('target', [0, 0xdead00000000beef, 0xffffffffffffffff])
def test_gate_outside_the_kernel_is_critical(fake, tmp_path, target):
    fake.gate(14, target)
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'critical' and finding.evidence['vector'] == 14
    assert finding.evidence['region'] == 'outside kernel and modules'


def test_wrong_selector_or_gate_type_is_high(fake, tmp_path):
    fake.gate(6, fake.sym('asm_exc_6'), selector=0x33)
    fake.gate(7, fake.sym('asm_exc_7'), gate_type=0xc)
    findings = {f.evidence['vector']: f for f in run(fake.attach(tmp_path)).findings}
    assert set(findings) == {6, 7}
    assert findings[6].severity == findings[7].severity == 'high'
    assert 'selector' in findings[6].summary and 'gate type' in findings[7].summary


def test_trap_gates_are_fine(fake, tmp_path):
    fake.gate(3, fake.sym('asm_exc_3'), gate_type=0xf, dpl=3)
    result = run(fake.attach(tmp_path))
    assert result.findings == [] and result.records[3]['type'] == 'trap'


def test_not_present_gates_are_recorded_not_judged(fake, tmp_path):
    fake.gate(200, 0x4141414141414141, selector=0, gate_type=0, present=False)
    result = run(fake.attach(tmp_path))
    assert result.findings == []
    assert result.records[200]['present'] is False


def test_descriptor_pointing_at_another_table_is_critical(fake, tmp_path):
    fake.g.vwrite(fake.sym('idt_descr'), struct.pack('<HQ', 0xfff, fake.dm(0x1800000)))
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'critical' and 'descriptor' in finding.summary
    assert finding.evidence['idt_descr'] == '0x%x' % fake.dm(0x1800000)


def test_descriptor_with_an_unmapped_address_is_critical(fake, tmp_path):
    fake.g.vwrite(fake.sym('idt_descr'), struct.pack('<HQ', 0xfff, 0xdead000000000000))
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'critical'


def test_descriptor_with_a_short_limit_is_medium(fake, tmp_path):
    fake.g.vwrite(fake.sym('idt_descr'), struct.pack('<HQ', 0x7ff, fake.sym('idt_table')))
    [finding] = run(fake.attach(tmp_path)).findings
    assert finding.severity == 'medium'


def test_kernel_without_idt_descr_checks_the_table_only(fake, tmp_path):
    del fake.offsets['idt_descr']
    assert run(fake.attach(tmp_path)).findings == []


def test_unmapped_idt_is_the_probes_error(fake, tmp_path):
    kernel = fake.attach(tmp_path)
    fake.poke_phys(fake.g.entry_slot(fake.sym('idt_table'), 2), bytes(8))
    assert run(kernel).error.startswith('TranslationError')


@pytest.mark.timeout(120)
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hst.lists(hst.tuples(hst.integers(0, 4096 // 8 - 1), hst.integers(0, 2 ** 64 - 1)),
                 min_size=1, max_size=16),
       hst.lists(hst.tuples(hst.integers(0, 0x800 - 8), hst.integers(0, 2 ** 64 - 1)),
                 max_size=4))
def test_fuzzed_gates_and_stubs_never_escape(tmp_path_factory, gate_words, stub_words):
    fake = CodeKernel()
    fake.module_with_text('m')
    for index, value in gate_words:
        fake.g.vu64(fake.sym('idt_table') + index * 8, value)
    for off, value in stub_words:
        fake.g.vu64((fake.sym('irq_entries_start') + off) & ~7, value)
    result = run(fake.attach(tmp_path_factory.mktemp('fuzz')))
    assert result.error is None, result.error
    assert len(result.records) == 256
    if not stub_words:
        changed = {i * 8 // 16 for i, _ in gate_words}
        vectors = {f.evidence.get('vector') for f in result.findings}
        assert vectors <= changed
