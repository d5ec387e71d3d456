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

"""Tests for vmi_agent.engine.linux.kallsyms.

:class:`KallsymsEncoder` is a small test-only re-implementation of what
``scripts/kallsyms.c`` emits (token compression, ULEB128 lengths, markers,
seqs_of_names, the address encodings and the table order of each kernel era), so that
the decoder is tested without a real kernel.  A real kernel is used too when one is
found (``NOVA_VMI_TEST_VMLINUZ`` or ``/boot/vmlinuz-*``).
"""

import glob
import os
import random
import struct
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.engine.test_kernel_image import make_elf
from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux import kallsyms
from vmi_agent.engine.linux.kallsyms import (KallsymsError, find_kallsyms,
                                             find_kallsyms_in_elf, read_kallsyms)
from vmi_agent.engine.linux.kernel_image import ElfImage, KernelImageError, unpack_vmlinuz

TEXT = 0xffffffff81000000

# Table order and encoding of each kernel era, as scripts/kallsyms.c writes them.
LAYOUTS = {
    # name: (order, address encoding, label alignment, wide num_syms/markers)
    'v4.4': ('offsets-first', 'absolute', 8, True),
    'v6.1': ('offsets-first', 'relative', 8, False),
    'v6.2': ('offsets-first+seqs', 'relative', 8, False),
    'v6.4': ('names-first', 'relative', 8, False),
    'v7': ('names-first', 'pc-relative', 4, False),
}


def _pad(out, alignment):
    out += bytes(-len(out) % alignment)
    return len(out)


class KallsymsEncoder:
    """Encode (address, type, name) symbols into kallsyms tables like scripts/kallsyms.c."""

    def __init__(self, symbols, rounds=256):
        # The generator sorts by address, keeping the input order among equals.
        self.symbols = sorted(symbols, key=lambda s: s[0])
        self.records = [bytearray((t + n).encode()) for _, t, n in self.symbols]
        self.tokens = [None] * 256
        self._compress(rounds)

    def _compress(self, rounds):
        """Give unused codes to the most frequent pairs, from code 255 down."""
        for record in self.records:
            for c in record:
                self.tokens[c] = bytes([c])
        profit = Counter()
        for record in self.records:
            profit.update(zip(record, record[1:]))
        for code in range(255, -1, -1):
            if self.tokens[code] is not None:
                continue
            if rounds == 0 or not +profit:
                break
            rounds -= 1
            pair = max(profit, key=profit.get)
            self.tokens[code] = bytes(pair)
            for i, record in enumerate(self.records):
                if pair[0] not in record:
                    continue
                out, j, changed = bytearray(), 0, False
                while j < len(record):
                    if j + 1 < len(record) and (record[j], record[j + 1]) == pair:
                        out.append(code)
                        j += 2
                        changed = True
                    else:
                        out.append(record[j])
                        j += 1
                if changed:
                    profit.subtract(zip(record, record[1:]))
                    profit.update(zip(out, out[1:]))
                    self.records[i] = out

    def token_string(self, code):
        token = self.tokens[code]
        if token is None:
            return b''
        if len(token) == 1 and token[0] == code:
            return token
        return b''.join(self.token_string(c) for c in token)

    def names(self, wide_lengths=True):
        out, markers = bytearray(), []
        for i, record in enumerate(self.records):
            if i % 256 == 0:
                markers.append(len(out))
            if len(record) > 0x7f:
                assert wide_lengths
                out += bytes([(len(record) & 0x7f) | 0x80, len(record) >> 7])
            else:
                out.append(len(record))
            out += record
        return out, markers

    def seqs(self):
        order = sorted(range(len(self.symbols)),
                       key=lambda i: (self.symbols[i][2].encode(), self.symbols[i][0], i))
        return b''.join(i.to_bytes(3, 'big') for i in order)

    def build(self, layout, base=0, prefix=b'', suffix=b'', percpu=False):
        """The tables in ``layout``'s order, between ``prefix`` and ``suffix``.

        ``base`` is the address the first byte of the result will have (needed only by
        the place-relative layout); ``percpu`` applies the KALLSYMS_ABSOLUTE_PERCPU
        rule to the 'A' symbols.
        """
        order, encoding, align, wide = LAYOUTS[layout]
        out = bytearray(prefix)
        at = {}
        n = len(self.symbols)
        addresses = [a for a, _, _ in self.symbols]
        names, markers = self.names(wide_lengths=not wide)
        table = [self.token_string(c) for c in range(256)]
        index, pos = [], 0
        for token in table:
            index.append(pos)
            pos += len(token) + 1

        def emit_offsets():
            at['offsets'] = _pad(out, align)
            if encoding == 'absolute':
                out.extend(struct.pack('<%dQ' % n, *addresses))
            elif encoding == 'pc-relative':
                for i, addr in enumerate(addresses):
                    out.extend(struct.pack('<i', addr - (base + at['offsets'] + 4 * i)))
            else:
                if percpu:
                    rel = next(a for a, t, _ in self.symbols if t != 'A')
                    values = [a if t == 'A' else rel - a - 1 for a, t, _ in self.symbols]
                    out.extend(struct.pack('<%di' % n, *values))
                else:
                    rel = addresses[0]
                    out.extend(struct.pack('<%dI' % n, *[a - rel for a in addresses]))
                at['relative_base'] = _pad(out, align)
                out.extend(struct.pack('<Q', rel))
                at['relative_base_value'] = rel

        def emit_names():
            at['num_syms'] = _pad(out, align)
            out.extend(struct.pack('<Q' if wide else '<I', n))
            at['names'] = _pad(out, align)
            out.extend(names)
            at['markers'] = _pad(out, align)
            out.extend(struct.pack('<%d%s' % (len(markers), 'Q' if wide else 'I'), *markers))

        def emit_seqs():
            at['seqs'] = _pad(out, align)
            out.extend(self.seqs())

        def emit_tokens():
            at['token_table'] = _pad(out, align)
            out.extend(b''.join(t + b'\0' for t in table))
            at['token_index'] = _pad(out, align)
            out.extend(struct.pack('<256H', *index))

        if order.startswith('offsets-first'):
            emit_offsets()
            emit_names()
            if order.endswith('+seqs'):
                emit_seqs()
            emit_tokens()
        else:
            emit_names()
            emit_tokens()
            emit_offsets()
            emit_seqs()
        out += suffix
        return bytes(out), at


def make_symbols(count=700, seed=1, percpu=False, long_names=True):
    """A kernel-like symbol list: per-cpu 'A' symbols, text, data, bss, duplicates."""
    rnd = random.Random(seed)
    words = ['init', 'task', 'sched', 'page', 'alloc', 'free', 'irq', 'cpu', 'mm', 'vfs',
             'read', 'write', 'lock', 'unlock', 'tcp', 'sock', 'dev', 'net', 'x86', 'pci']
    symbols = [(TEXT, 'T', '_text'), (TEXT, 'T', '_stext'), (TEXT, 'T', 'startup_64'),
               (TEXT + 0x10, 't', 'digits_0123456789')]
    if percpu:
        symbols += [(0, 'A', 'fixed_percpu_data'), (0, 'A', '__per_cpu_start'),
                    (0x19a00, 'A', 'cpu_number'), (0x19a08, 'A', 'this_cpu_off')]
    addr = TEXT + 0x100
    for i in range(count):
        addr += rnd.choice([0, 0x10, 0x40, 0x120])
        kind = rnd.choice('TtTtDdBbRrW')
        name = '_'.join(rnd.choice(words) for _ in range(rnd.randint(1, 4)))
        if rnd.random() < 0.3:
            name += str(rnd.randint(0, 99))
        symbols.append((addr, kind, name))
    if long_names:
        name = ''.join(rnd.choice('abcdefghijklmnopqrstuvwxyzQXZ_') for _ in range(300))
        symbols.append((addr + 0x40, 'T', name))
    symbols += [(addr + 0x1000, 'D', 'init_task'), (addr + 0x2000, 'D', 'linux_banner'),
                (addr + 0x3000, 'B', 'idt_table'), (addr + 0x3000, 'b', 'idt_table')]
    return symbols


def junk(size, seed=0):
    """Random bytes standing for the rest of the kernel image."""
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope='module')
def encoder():
    return KallsymsEncoder(make_symbols())


@pytest.fixture(scope='module')
def percpu_encoder():
    return KallsymsEncoder(make_symbols(percpu=True))


class TestLayouts:
    @pytest.mark.parametrize('layout', ['v6.1', 'v6.2', 'v6.4', 'v7'])
    @pytest.mark.parametrize('prefix_size', [0x1234, 0x3001])
    def test_round_trip(self, encoder, layout, prefix_size):
        image, at = encoder.build(layout, base=TEXT, prefix=junk(prefix_size),
                                  suffix=junk(777, 1))
        tables = read_kallsyms(image, base=TEXT)
        assert tables.symbols == encoder.symbols
        assert tables.num_syms == len(encoder.symbols)
        assert (tables.names_at, tables.markers_at) == (at['names'], at['markers'])
        assert (tables.token_table_at, tables.token_index_at) == (
            at['token_table'], at['token_index'])
        assert tables.addresses_at == at['offsets']
        assert tables.seqs_at == at.get('seqs')
        assert tables.relative_base_at == at.get('relative_base')

    def test_layout_names(self, encoder):
        found = {layout: read_kallsyms(encoder.build(layout, base=TEXT)[0], base=TEXT)
                 for layout in LAYOUTS if layout != 'v4.4'}
        assert {k: (v.layout, v.encoding) for k, v in found.items()} == {
            'v6.1': ('offsets-first', 'relative'),
            'v6.2': ('offsets-first', 'relative'),
            'v6.4': ('names-first', 'relative'),
            'v7': ('names-first', 'pc-relative'),
        }

    def test_old_absolute_layout(self):
        enc = KallsymsEncoder(make_symbols(long_names=False))
        image, _ = enc.build('v4.4', prefix=junk(0x800))
        tables = read_kallsyms(image)
        assert tables.symbols == enc.symbols
        assert tables.encoding == 'absolute' and tables.relative_base is None

    @pytest.mark.parametrize('layout', ['v6.1', 'v6.2', 'v6.4'])
    def test_absolute_percpu(self, percpu_encoder, layout):
        image, _ = percpu_encoder.build(layout, prefix=junk(0x1000), percpu=True)
        tables = read_kallsyms(image)
        assert tables.encoding == 'relative-percpu'
        assert tables.relative_base == TEXT
        assert tables.symbols == percpu_encoder.symbols
        assert tables.symbols[:2] == [(0, 'A', 'fixed_percpu_data'),
                                      (0, 'A', '__per_cpu_start')]

    def test_long_names_use_two_byte_lengths(self, encoder):
        assert any(len(r) > 0x7f for r in encoder.records)
        image, _ = encoder.build('v6.1')
        assert max(len(name) for _, _, name in find_kallsyms(image)) == 300

    @pytest.mark.parametrize('count', [1, 5, 255, 256, 257, 512, 513])
    @pytest.mark.parametrize('layout', ['v6.1', 'v6.2', 'v6.4', 'v7'])
    def test_block_boundaries(self, layout, count):
        symbols = [(TEXT + 16 * i, 'T', 'f%d_0123456789' % i) for i in range(count)]
        enc = KallsymsEncoder(symbols, rounds=40)
        image, _ = enc.build(layout, base=TEXT, prefix=junk(0x400))
        assert find_kallsyms(image, base=TEXT) == enc.symbols

    def test_pc_relative_without_base_is_image_relative(self, encoder):
        image, _ = encoder.build('v7', base=TEXT, prefix=junk(0x2000))
        relative = find_kallsyms(image)
        assert [(a + TEXT, t, n) for a, t, n in relative] == encoder.symbols

    def test_accepts_buffers(self, encoder):
        image, _ = encoder.build('v6.2', prefix=junk(0x100))
        image += bytes(-len(image) % 8)
        expected = encoder.symbols
        assert find_kallsyms(memoryview(image)) == expected
        assert find_kallsyms(bytearray(image)) == expected
        assert find_kallsyms(memoryview(image).cast('Q')) == expected


class TestImages:
    def test_vmlinux_loaded_image(self, percpu_encoder):
        """Tables inside the .rodata segment of a vmlinux, found via loaded_image()."""
        rodata_va, text_size = 0xffffffff82000000, 0x1000000
        tables, _ = percpu_encoder.build('v6.2', prefix=junk(0x2345), suffix=junk(64),
                                         percpu=True)
        elf = make_elf([(TEXT, 0x1000000, junk(0x3000, 7), 0x3000),
                        (rodata_va, 0x1000000 + text_size, tables, len(tables)),
                        (0, 0x1000000 + text_size + 0x200000, junk(0x100, 8), 0x1000)],
                       [('.rodata', rodata_va, len(tables), 2, 1)])
        image, base = ElfImage(elf).loaded_image()
        assert base == TEXT
        assert find_kallsyms(image, base) == percpu_encoder.symbols
        assert find_kallsyms_in_elf(ElfImage(elf)) == percpu_encoder.symbols

    @pytest.mark.parametrize('layout, percpu', [
        ('v6.2', True), ('v6.4', True), ('v6.4', False), ('v7', False)])
    def test_guest_memory_window_after_kaslr(self, request, layout, percpu):
        """In memory the relative base holds the runtime address; per-cpu stays put."""
        enc = request.getfixturevalue('percpu_encoder' if percpu else 'encoder')
        slide = 0x2e600000
        image, at = enc.build(layout, prefix=junk(0x5000), base=TEXT, percpu=percpu)
        memory = bytearray(junk(0x9000, 3)) + image + bytes(0x3000)
        window_base = TEXT + slide - 0x9000
        if layout != 'v7':
            struct.pack_into('<Q', memory, 0x9000 + at['relative_base'],
                             at['relative_base_value'] + slide)
        found = find_kallsyms(memoryview(memory), base=window_base)
        assert found == [(a if t == 'A' else a + slide, t, n) for a, t, n in enc.symbols]


@pytest.mark.timeout(60)
class TestHostile:
    """Corrupt tables must raise KallsymsError (a hang fails through the timeout)."""

    def _assert_rejected(self, image, match=None):
        with pytest.raises(KallsymsError, match=match):
            read_kallsyms(image)

    def test_error_is_a_profile_error(self):
        assert issubclass(KallsymsError, ProfileError)

    @pytest.mark.parametrize('data', [b'', bytes(1 << 20), junk(1 << 20)],
                             ids=['empty', 'zeros', 'random'])
    def test_no_tables(self, data):
        self._assert_rejected(data, 'token table')

    @pytest.mark.parametrize('layout', ['v6.1', 'v6.2', 'v6.4', 'v7'])
    @pytest.mark.parametrize('cut', ['num_syms', 'names', 'markers', 'token_index'])
    def test_truncated(self, encoder, layout, cut):
        image, at = encoder.build(layout, base=TEXT, prefix=junk(0x800))
        self._assert_rejected(image[:at[cut] + 40])

    @pytest.mark.parametrize('layout', ['v6.1', 'v6.2', 'v6.4'])
    def test_huge_num_syms(self, encoder, layout):
        image, at = encoder.build(layout, base=TEXT, prefix=junk(0x800))
        image = bytearray(image)
        struct.pack_into('<I', image, at['num_syms'], 0xfffffff0)
        self._assert_rejected(bytes(image))

    def test_markers_not_monotonic(self, encoder):
        image, at = encoder.build('v6.1', prefix=junk(0x800))
        image = bytearray(image)
        second, = struct.unpack_from('<I', image, at['markers'] + 4)
        struct.pack_into('<I', image, at['markers'] + 8, second - 4)   # points back
        self._assert_rejected(bytes(image))

    def test_marker_off_by_one(self, encoder):
        image, at = encoder.build('v6.4', prefix=junk(0x800))
        image = bytearray(image)
        value, = struct.unpack_from('<I', image, at['markers'] + 4)
        struct.pack_into('<I', image, at['markers'] + 4, value + 1)
        self._assert_rejected(bytes(image))

    def test_record_length_runs_past_names(self, encoder):
        image, at = encoder.build('v6.1', prefix=junk(0x800))
        image = bytearray(image)
        image[at['names']] = 0x7f
        self._assert_rejected(bytes(image))

    def test_token_index_inconsistent(self, encoder):
        image, at = encoder.build('v6.1', prefix=junk(0x800))
        image = bytearray(image)
        struct.pack_into('<H', image, at['token_index'] + 2 * 0x41, 3)
        self._assert_rejected(bytes(image), 'token table')

    def test_token_with_control_character(self, encoder):
        image, at = encoder.build('v6.1', prefix=junk(0x800))
        image = bytearray(image)
        index = struct.unpack_from('<256H', image, at['token_index'])
        assert image[at['token_table'] + index[ord('a')]] == ord('a')
        image[at['token_table'] + index[ord('a')]] = 0x01
        self._assert_rejected(bytes(image))

    def test_seqs_not_a_permutation(self, encoder):
        image, at = encoder.build('v6.4', prefix=junk(0x800))
        image = bytearray(image)
        image[at['seqs'] + 3:at['seqs'] + 6] = image[at['seqs']:at['seqs'] + 3]
        self._assert_rejected(bytes(image))

    @pytest.mark.parametrize('layout', ['v6.1', 'v6.4'])
    def test_offsets_not_sorted(self, encoder, layout):
        image, at = encoder.build(layout, base=TEXT, prefix=junk(0x800))
        image = bytearray(image)
        struct.pack_into('<I', image, at['offsets'] + 40, 0x7fffffff)
        self._assert_rejected(bytes(image))

    def test_many_token_table_lookalikes(self):
        fake = kallsyms._DIGITS + b'x\0' * 200
        self._assert_rejected(fake * 5000, 'token')

    def test_many_valid_token_tables_without_names(self, encoder):
        """Real token tables, but nothing before them: bounded by the work budget."""
        image, at = encoder.build('v6.4')
        tokens = image[at['token_table']:at['token_index'] + 512]
        self._assert_rejected((junk(4000) + tokens) * 40)

    def test_zero_filled_rodata_before_seqs(self, encoder):
        image, at = encoder.build('v6.2')
        tokens = image[at['token_table']:]
        self._assert_rejected(bytes(4 << 20) + tokens)

    def test_budget_exhaustion_is_reported(self, encoder, monkeypatch):
        monkeypatch.setattr(kallsyms, 'SEARCH_BUDGET', 10)
        image, _ = encoder.build('v6.2', prefix=junk(0x800))
        self._assert_rejected(image, 'gave up')


# --- property-based tests -------------------------------------------------------------

NAME = st.text('abcdefghijklmnopqrstuvwxyz_ABCXYZ0123456789.', min_size=1, max_size=40)


@st.composite
def symbol_sets(draw):
    count = draw(st.integers(1, 300))
    names = draw(st.lists(NAME, min_size=count, max_size=count))
    if draw(st.booleans()):
        names.append(draw(st.text('abcdefghijklmnopqrstuvwxyz', min_size=128, max_size=511)))
    steps = draw(st.lists(st.sampled_from([0, 1, 16, 0x1000]), min_size=len(names),
                          max_size=len(names)))
    types = draw(st.lists(st.sampled_from('TtDdBbRrWV'), min_size=len(names),
                          max_size=len(names)))
    addr = draw(st.integers(TEXT, TEXT + 0x1000000))
    symbols = [(TEXT, 'T', '_text_0123456789')]
    for name, step, kind in zip(names, steps, types):
        addr += step
        symbols.append((addr, kind, name))
    return symbols


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(symbols=symbol_sets(), layout=st.sampled_from(['v6.1', 'v6.2', 'v6.4', 'v7']),
       prefix=st.integers(0, 64))
def test_property_round_trip(symbols, layout, prefix):
    enc = KallsymsEncoder(symbols, rounds=24)
    image, _ = enc.build(layout, base=TEXT, prefix=junk(prefix, prefix), suffix=b'\xff' * 9)
    assert find_kallsyms(image, base=TEXT) == enc.symbols


def _check_result_or_error(image):
    try:
        symbols = find_kallsyms(image)
    except KallsymsError:
        pass
    else:
        addresses = [a for a, _, _ in symbols]
        assert addresses == sorted(addresses)
        assert all(t.isalpha() or t == '?' for _, t, _ in symbols)
        assert all(0 < len(n) < kallsyms.KSYM_NAME_LEN for _, _, n in symbols)


@pytest.fixture(scope='module')
def fuzz_images():
    enc = KallsymsEncoder(make_symbols(count=300, seed=5, percpu=True), rounds=60)
    return {layout: enc.build(layout, base=TEXT, prefix=junk(0x300), percpu=True)
            for layout in ['v6.1', 'v6.2', 'v6.4']}


@FUZZ
@given(data=st.data(), layout=st.sampled_from(['v6.1', 'v6.2', 'v6.4']))
def test_property_mutated_tables(fuzz_images, data, layout):
    image, at = fuzz_images[layout]
    image = bytearray(image)
    lo = min(v for k, v in at.items() if k != 'relative_base_value')
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(lo, len(image) - 1))
        image[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        image = image[:data.draw(st.integers(0, len(image)))]
    _check_result_or_error(bytes(image))


@FUZZ
@given(before=st.binary(max_size=3000), after=st.binary(max_size=3000))
def test_property_random_bytes_around_anchor(before, after):
    _check_result_or_error(before + kallsyms._DIGITS + after)


# --- a real kernel, when one is around ----------------------------------------------

def _real_kernel():
    candidates = [os.environ.get('NOVA_VMI_TEST_VMLINUZ', '')]
    candidates += sorted(glob.glob('/boot/vmlinuz-*'))
    return next((p for p in candidates if p and os.access(p, os.R_OK)), None)


@pytest.mark.skipif(_real_kernel() is None, reason='no readable kernel image '
                    '(set NOVA_VMI_TEST_VMLINUZ to a vmlinuz)')
def test_real_kernel():
    with open(_real_kernel(), 'rb') as f:
        data = f.read()
    try:
        elf = ElfImage(unpack_vmlinuz(data))
    except KernelImageError as exc:
        if 'install the optional' in str(exc):
            pytest.skip(str(exc))
        raise
    image, base = elf.loaded_image()
    tables = read_kallsyms(image, base)
    names = {name: addr for addr, _, name in tables.symbols}
    for name in ['_text', '_stext', 'init_task', 'init_top_pgt', 'linux_banner',
                 '__start_BTF', '__stop_BTF', 'page_offset_base', 'sys_call_table',
                 'idt_table', 'modules']:
        assert name in names, name
    assert names['_text'] == elf.sections['.text'].addr
    assert names['__start_BTF'] == elf.sections['.BTF'].addr
    assert elf.read(names['linux_banner'], 14) == b'Linux version '
    assert len(elf.build_id) == 40
