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

"""The ``kernel_text`` probe and the baseline store, on a crafted kernel image.

Each test takes a baseline of :class:`CodeKernel`'s image, then changes the running
"guest" (its RAM file) the way the kernel itself or a rootkit would, and checks what
the second run says.
"""

import glob
import json
import os
import struct

from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from tests.unit.engine.test_syscalls import (CODE, DATA, JUMPS, MODULE_BASE,
                                             STATIC_CALL_SITE, CodeKernel)
from vmi_agent.engine import baseline, probes
from vmi_agent.engine.probes import kernel_text
from vmi_agent.engine.probes.image_diff import diff_runs
from vmi_agent.engine.probes.kernel_text import KernelText

RET5 = bytes.fromhex('c3cccccccc')


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    path = tmp_path / 'state'
    monkeypatch.setenv('NOVA_VMI_STATE', str(path))
    return path


@pytest.fixture
def fake():
    return CodeKernel()


def run(kernel):
    results, _ = probes.run_probes(kernel, ['kernel_text'])
    return results['kernel_text']


def regions(result):
    return {r['region']: r for r in result.records}


@pytest.fixture
def kernel(fake, tmp_path):
    """The fake guest, attached, with its baseline taken."""
    kernel = fake.attach(tmp_path)
    first = run(kernel)
    assert first.error is None and first.findings == []
    assert {r['baseline'] for r in first.records} == {'created'}
    return kernel


def only(result):
    assert result.error is None, result.error
    [finding] = result.findings
    assert finding.kind == 'kernel_text_modified'
    return finding


# -- the clean path ---------------------------------------------------------------------
def test_baseline_then_an_unchanged_kernel_compares_clean(fake, kernel, state):
    result = run(kernel)
    assert result.error is None and result.findings == []
    text = regions(result)['text']
    assert text == {'region': 'text', 'start': '0x%x' % fake.sym('_stext'),
                    'end': '0x%x' % fake.sym('_etext'),
                    'pages': (CODE['_etext'] - CODE['_stext']) // 4096,
                    'changed_pages': 0, 'patched_sites': 0, 'baseline': 'compared'}
    assert regions(result)['rodata']['pages'] == (DATA['__end_rodata']
                                                  - DATA['__start_rodata']) // 4096
    assert len(glob.glob(str(state / '*' / 'fakebuild' / 'meta.json'))) == 1


def test_another_guest_gets_its_own_baseline(fake, kernel, tmp_path, state):
    probe = KernelText({'guest_id': 'another guest'})
    assert {r['baseline'] for r in probe.run(kernel).records} == {'created'}
    assert {r['baseline'] for r in probe.run(kernel).records} == {'compared'}
    assert len(glob.glob(str(state / '*' / 'fakebuild'))) == 2


def test_a_new_kaslr_layout_renews_the_baseline(tmp_path):
    probe = KernelText({'state_dir': str(tmp_path / 'own'), 'guest_id': 'guest'})
    for name, shift, status in (('boot1', None, 'created'), ('boot2', 0x4000000, 'renewed'),
                                ('boot3', 0x4000000, 'compared')):
        (tmp_path / name).mkdir()
        result = probe.run(CodeKernel(shift=shift).attach(tmp_path / name))
        assert result.findings == []
        assert {r['baseline'] for r in result.records} == {status}


# -- the kernel's own patching ----------------------------------------------------------
def test_jump_label_flips_are_the_kernels_own(fake, kernel):
    (five, five_to), (two, two_to) = JUMPS[:2]
    fake.poke(fake.image(five), fake.jmp(fake.image(five), fake.image(five_to)))
    fake.poke(fake.image(two), bytes([0xeb, two_to - (two + 2)]))
    for code, target in JUMPS[2:]:              # three adjacent 2-byte sites, one run
        fake.poke(fake.image(code), bytes([0xeb, target - (code + 2)]))
    result = run(kernel)
    assert result.error is None and result.findings == []
    assert regions(result)['text']['patched_sites'] == len(JUMPS)
    assert regions(result)['text']['changed_pages'] == 1


def test_jump_label_caught_mid_patch_is_fine(fake, kernel):
    code, target = JUMPS[0]
    fake.poke(fake.image(code), b'\xcc' + fake.jmp(fake.image(code), fake.image(target))[1:])
    assert run(kernel).findings == []


def test_jump_label_site_jumping_elsewhere_is_critical(fake, kernel):
    code, _ = JUMPS[0]
    fake.poke(fake.image(code), fake.jmp(fake.image(code), MODULE_BASE))
    finding = only(run(kernel))
    assert finding.severity == 'critical'
    assert finding.evidence['symbol'] == 'branchy+0x10'
    assert finding.evidence['target']['address'] == '0x%x' % MODULE_BASE


@pytest.mark.parametrize('encoding', ['nop', 'ret', 'xor', 'other function', 'module'])
def test_static_call_updates_are_the_kernels_own(fake, kernel, encoding):
    site = fake.image(STATIC_CALL_SITE)
    tramp = fake.sym('__SCT__tp_func_foo')
    if encoding == 'module':
        target = fake.module_with_text('tracer') + 0x10
    else:
        target = fake.sym('cold_function')
    data = {'nop': bytes.fromhex('0f1f440000'), 'ret': RET5,
            'xor': bytes.fromhex('2e2e2e31c0')}.get(encoding)
    fake.poke(site, data or fake.call(site, target))
    fake.poke(tramp, data or fake.jmp(tramp, target))
    result = run(kernel)
    assert result.error is None and result.findings == []
    assert regions(result)['text']['patched_sites'] == 2


def test_static_call_into_the_middle_of_a_function_is_critical(fake, kernel):
    site = fake.image(STATIC_CALL_SITE)
    fake.poke(site, fake.call(site, fake.sym('vfs_read') + 3))
    finding = only(run(kernel))
    assert finding.severity == 'critical'
    assert finding.evidence['target']['symbol'] == 'vfs_read+0x3'
    assert finding.evidence['symbols'] == ['caller_fn']


def test_ftrace_enabling_a_function_is_the_kernels_own(fake, kernel):
    entry = fake.sym('cold_function')
    fake.poke(entry, fake.call(entry, fake.sym('ftrace_regs_caller')))
    call = fake.sym('ftrace_call')
    fake.poke(call, fake.call(call, fake.sym('vfs_read')))
    result = run(kernel)
    assert result.findings == []
    assert regions(result)['text']['patched_sites'] == 2


def test_function_entry_calling_an_outside_trampoline_is_medium(fake, kernel):
    entry = fake.sym('cold_function')
    fake.poke(entry, fake.call(entry, 0xffffffffc0100000))
    finding = only(run(kernel))
    assert finding.severity == 'medium' and 'trampoline' in finding.summary
    assert finding.evidence['symbol'] == 'cold_function'
    assert finding.evidence['old'] == '0f1f440000'


def test_function_entry_calling_into_a_module_is_high(fake, kernel):
    base = fake.module_with_text('directcall')
    entry = fake.sym('cold_function')
    fake.poke(entry, fake.call(entry, base))
    finding = only(run(kernel))
    assert finding.severity == 'high'
    assert finding.evidence['target']['module'] == 'directcall'


def test_inline_hook_at_a_function_entry_is_critical(fake, kernel):
    base = fake.module_with_text('rootkit')
    entry = fake.sym('vfs_read')
    fake.poke(entry, fake.jmp(entry, base + 0x80))
    finding = only(run(kernel))
    assert finding.severity == 'critical' and 'inline hook' in finding.summary
    assert finding.evidence['target']['module'] == 'rootkit'
    assert finding.evidence['symbols'] == ['vfs_read']


def test_bpf_dispatcher_jump_is_medium(fake, kernel):
    entry = fake.sym('bpf_dispatcher_xdp_func')
    fake.poke(entry, fake.jmp(entry, 0xffffffffc0200000))
    assert only(run(kernel)).severity == 'medium'


def test_hook_past_the_entry_site_is_critical(fake, kernel):
    """A jump written at function+5, right after the NOP, is no patch site."""
    at = fake.sym('vfs_read') + 5
    fake.poke(at, fake.jmp(at, MODULE_BASE))
    finding = only(run(kernel))
    assert finding.severity == 'critical' and 'jump to' in finding.summary


def test_int3_in_a_function_is_a_possible_kprobe(fake, kernel):
    fake.poke(fake.sym('cold_function') + 8, b'\xcc')
    finding = only(run(kernel))
    assert finding.severity == 'medium' and 'kprobe' in finding.summary


def test_lock_prefix_switch_is_the_kernels_own(fake, kernel):
    fake.poke(fake.sym('lock_user') + 5, b'\x3e')
    result = run(kernel)
    assert result.findings == [] and regions(result)['text']['patched_sites'] == 1


# -- tampering ----------------------------------------------------------------------------
def test_one_patched_byte_names_its_function(fake, kernel):
    at = fake.sym('cold_function') + 9
    fake.poke(at, b'\x41')
    finding = only(run(kernel))
    assert finding.severity == 'critical'
    assert 'cold_function+0x9' in finding.summary
    assert finding.evidence['symbols'] == ['cold_function']
    assert finding.evidence['address'] == '0x%x' % at
    assert finding.evidence['region'] == 'text'
    assert finding.evidence['changes'] == 1
    assert (finding.evidence['old'], finding.evidence['new']) == ('31', '41')


def test_read_only_data_change_names_the_table(fake, kernel):
    fake.poke(fake.sym('sys_call_table') + 8, struct.pack('<Q', MODULE_BASE))
    finding = only(run(kernel))
    assert finding.severity == 'critical' and finding.evidence['region'] == 'rodata'
    assert finding.evidence['symbols'] == ['sys_call_table']


def test_forged_jump_table_entry_is_itself_reported(fake, kernel):
    entry = fake.sym('__start___jump_table')
    hook = fake.sym('vfs_read') + 8
    fake.poke(entry, struct.pack('<i', hook - entry))
    fake.poke(hook, bytes.fromhex('0f1f440000'))
    findings = run(kernel).findings
    assert any(f.evidence['region'] == 'rodata' and f.severity == 'critical'
               and f.evidence['symbols'] == ['__start___jump_table'] for f in findings)


def test_many_changes_are_grouped_and_bounded(fake, kernel):
    start = fake.sym('_stext')
    for i in range(300):
        fake.poke(start + i * 64 + 33, b'\x41')
    result = run(kernel)
    assert len(result.findings) == 1
    assert result.findings[0].evidence['changes'] == 300
    assert len(result.findings[0].evidence['sites']) == kernel_text.MAX_LISTED


def test_many_kinds_of_change_are_folded(fake, kernel, monkeypatch):
    monkeypatch.setattr(kernel_text, 'MAX_FINDINGS', 3)
    entries = [fake.sym(name) for name in ('vfs_read', 'cold_function', 'caller_fn',
                                           'lock_user', 'branchy')]
    for i, entry in enumerate(entries):
        fake.poke(entry, fake.jmp(entry, MODULE_BASE + i * 0x1000))
    findings = run(kernel).findings
    assert len(findings) == 4
    assert findings[-1].evidence == {'changes': 2, 'symbols': ['caller_fn', 'lock_user'],
                                     'reason': 'too many kinds of changes'}


@pytest.mark.timeout(120)
def test_rewritten_text_is_bounded(fake, kernel, monkeypatch):
    monkeypatch.setattr(kernel_text, 'MAX_DIFF_PAGES', 8)
    size = CODE['_etext'] - CODE['_stext']
    fake.poke(fake.sym('_stext'), os.urandom(size))
    result = run(kernel)
    assert result.error is None
    assert regions(result)['text']['changed_pages'] == size // 4096
    assert len(result.findings) <= kernel_text.MAX_FINDINGS + 2
    assert any('not diffed' in f.summary for f in result.findings)


def test_text_page_remapped_to_a_copy_is_critical(fake, kernel):
    g = fake.g
    page = fake.sym('cold_function') & ~0xfff
    slot = g.entry_slot(page, 2)
    large = g.read_u64(slot)
    base_v, base_p = page & ~0x1fffff, large & 0x000fffffffe00000
    table, copy = 0x1c00000, 0x1c01000
    ptes = [(base_p + i * 4096) | 3 for i in range(512)]
    ptes[(page - base_v) // 4096] = copy | 3
    fake.poke_phys(copy, b'\xcc' * 4096)               # the copy the CPU would run
    fake.poke_phys(table, struct.pack('<512Q', *ptes))
    fake.poke_phys(slot, struct.pack('<Q', table | 3))
    finding = only(run(kernel))
    assert finding.severity == 'critical' and finding.evidence['reason'] == 'remapped'
    assert finding.evidence['address'] == '0x%x' % page
    assert finding.evidence['mapped_physical'] == '0x%x' % copy
    assert finding.evidence['size'] == 4096


def test_unmapped_kernel_text_is_critical(fake, kernel):
    fake.poke_phys(fake.g.entry_slot(fake.sym('_stext'), 2), bytes(8))
    findings = run(kernel).findings
    assert findings and all(f.evidence['mapped_physical'] is None for f in findings)


# -- the baseline store -----------------------------------------------------------------
def _baseline_file(state, name):
    [path] = glob.glob(str(state / '*' / 'fakebuild' / name))
    return path


def test_damaged_baseline_pages_are_the_probes_error(fake, kernel, state):
    path = _baseline_file(state, 'text.pages')
    with open(path, 'r+b') as f:
        f.seek(100)
        f.write(b'\xff' * 64)
    fake.poke(fake.sym('cold_function') + 9, b'\x41')       # makes it read the pages
    assert run(kernel).error.startswith('BaselineError')


@pytest.mark.parametrize('damage', ['not json', 'truncated digests', 'bad region'])
def test_damaged_baseline_index_is_the_probes_error(kernel, state, damage):
    meta = _baseline_file(state, 'meta.json')
    if damage == 'not json':
        with open(meta, 'w') as f:
            f.write('{')
    elif damage == 'truncated digests':
        with open(_baseline_file(state, 'text.digests'), 'r+b') as f:
            f.truncate(64)
    else:
        with open(meta) as f:
            data = json.load(f)
        data['regions']['../x'] = data['regions']['text']
        with open(meta, 'w') as f:
            json.dump(data, f)
    assert run(kernel).error.startswith('BaselineError')


def test_page_image_round_trip_and_checks(tmp_path):
    data = os.urandom(4096 * 20 + 100)
    image = baseline.PageImage.capture(0x1000, data)
    assert image.pages == 21
    assert image.page(20) == data[4096 * 20:]
    store = baseline.BaselineStore(str(tmp_path))
    store.save('guest', 'build', {'k': 1}, {'text': image})
    store.save('guest', 'build', {'k': 2}, {'text': image})       # replaces
    meta, images = store.load('guest', 'build')
    assert meta == {'k': 2} and images['text'].page(3) == data[4096 * 3:4096 * 4]
    assert store.load('guest', 'other') is None
    with pytest.raises(baseline.BaselineError):
        store.load('guest', '../escape')
    with pytest.raises(baseline.BaselineError):
        baseline.PageImage(0, 4096, bytes(31), [(0, 1)], b'x')
    with pytest.raises(baseline.BaselineError):
        baseline.PageImage(0, 4096, bytes(32), [(0, 9)], b'x')


def test_default_state_path(monkeypatch):
    monkeypatch.setenv('NOVA_VMI_STATE', '/some/where')
    assert baseline.default_state_path() == '/some/where'
    monkeypatch.delenv('NOVA_VMI_STATE')
    monkeypatch.setenv('XDG_CACHE_HOME', '/cache')
    assert baseline.default_state_path() == '/cache/nova-vmi/state'


@pytest.mark.parametrize('old, new, runs', [
    (b'abcdefgh', b'abcdefgh', []),
    (b'abcdefghij', b'aXcdefgYZj', [(1, 2), (7, 9)]),
    (b'\0' * 13, b'\1' * 13, [(0, 13)]),
])
def test_diff_runs(old, new, runs):
    assert diff_runs(old, new) == runs


@pytest.mark.timeout(300)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hst.lists(hst.tuples(hst.integers(CODE['_stext'], DATA['__end_rodata'] - 8),
                            hst.binary(min_size=1, max_size=8)), min_size=1, max_size=24))
def test_fuzzed_image_changes_never_escape(tmp_path_factory, writes):
    """Random stores over text, tables and read-only data after the baseline."""
    tmp = tmp_path_factory.mktemp('fuzz')
    fake = CodeKernel()
    kernel = fake.attach(tmp)
    probe = KernelText({'state_dir': str(tmp / 'state'), 'guest_id': 'fuzz'})
    probe.run(kernel)
    for offset, data in writes:
        fake.poke(fake.image(offset), data)
    kernel.flush()
    result = probe.run(kernel)
    assert len(result.findings) <= kernel_text.MAX_FINDINGS + 2
    for finding in result.findings:
        assert finding.kind == 'kernel_text_modified'
        json.dumps(finding.to_dict())
