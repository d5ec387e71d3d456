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

"""Tests for vmi_agent.engine.linux.symbols."""

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux.symbols import (SymbolNotFoundError, SymbolTable,
                                            parse_kallsyms, parse_system_map)

TEXT = 0xffffffff81000000

SYMBOLS = [
    (TEXT + 0x3000, 'D', 'init_task'),
    (TEXT, 'T', '_text'),
    (TEXT, 'T', 'startup_64'),
    (TEXT + 0x100, 't', 'helper'),
    (TEXT + 0x200, 't', 'helper'),           # a static of the same name elsewhere
    (TEXT + 0x300, 'W', 'arch_hook'),        # weak default ...
    (TEXT + 0x400, 'T', 'arch_hook'),        # ... and its override
    (TEXT + 0x5000, 'b', 'idt_table'),
    (TEXT + 0x6000, 'B', 'idt_table'),
    (TEXT + 0x5000, 'B', 'bss_start_here'),
    (0, 'A', 'fixed_percpu_data'),
    (0x19a00, 'A', 'cpu_number'),
]


@pytest.fixture
def table():
    return SymbolTable(SYMBOLS)


def _recrc(blob):
    """Rewrite the checksum after tampering, to reach the checks behind it."""
    blob = bytearray(blob)
    struct.pack_into('<I', blob, 20, zlib.crc32(blob[24:]))
    return bytes(blob)


class TestSymbolTable:
    def test_sorted_and_sized(self, table):
        assert len(table) == len(SYMBOLS)
        addresses = [a for a, _, _ in table]
        assert addresses == sorted(addresses)
        assert sorted(table) == sorted(SYMBOLS)

    def test_address(self, table):
        assert table.address('init_task') == TEXT + 0x3000
        assert table.address('cpu_number') == 0x19a00
        assert table.get('nope') is None
        assert table.get('nope', 7) == 7

    def test_missing_symbol(self, table):
        with pytest.raises(SymbolNotFoundError) as info:
            table.address('no_such_symbol')
        assert isinstance(info.value, ProfileError) and isinstance(info.value, KeyError)
        assert str(info.value) == "kernel symbol 'no_such_symbol' not found"
        assert info.value.name == 'no_such_symbol'

    def test_duplicates_prefer_global_text_and_data(self, table):
        assert table.address('idt_table') == TEXT + 0x6000          # B over b
        assert table.address('arch_hook') == TEXT + 0x400           # T over W
        assert table.address('helper') == TEXT + 0x100              # first of equals

    def test_lookup(self, table):
        assert table.lookup(TEXT - 1) == ('cpu_number', TEXT - 1 - 0x19a00)
        assert table.lookup(TEXT + 0x3008) == ('init_task', 8)
        assert table.lookup(TEXT + 0x1ff) == ('helper', 0xff)
        assert table.lookup(0x10) == ('fixed_percpu_data', 0x10)
        assert table.lookup(TEXT) == ('_text', 0)                   # first of equals
        assert table.lookup(TEXT + 0x5000) == ('bss_start_here', 0)  # B before b
        assert table.lookup(1 << 70) == ('idt_table', (1 << 70) - TEXT - 0x6000)
        assert SymbolTable([(0x1000, 'T', 'a')]).lookup(0xfff) is None
        assert SymbolTable().lookup(0) is None

    def test_shift_moves_all_but_absolute(self, table):
        slide = 0x2e600000
        moved = table.shift(slide)
        assert moved.address('_text') == TEXT + slide
        assert moved.address('idt_table') == TEXT + 0x6000 + slide
        assert moved.address('cpu_number') == 0x19a00
        assert moved.lookup(TEXT + slide + 0x3001) == ('init_task', 1)
        assert table.address('_text') == TEXT                        # original unchanged
        assert moved.shift(-slide).to_bytes() == table.to_bytes()

    def test_shift_reorders_when_needed(self):
        table = SymbolTable([(0x800, 't', 'low'), (0x1000, 'A', 'abs')])
        moved = table.shift(0x1000)
        assert list(moved) == [(0x1000, 'A', 'abs'), (0x1800, 't', 'low')]

    def test_shift_out_of_range(self, table):
        with pytest.raises(ProfileError, match='out of the address space'):
            table.shift(1 << 63)

    @pytest.mark.parametrize('symbols', [
        [(-1, 'T', 'x')], [(1 << 64, 'T', 'x')], [('0x10', 'T', 'x')],
        [(1, 'TT', 'x')], [(1, '', 'x')], [(1, '\n', 'x')],
        [(1, 'T', '')], [(1, 'T', 'a\0b')],
    ])
    def test_rejects_bad_symbols(self, symbols):
        with pytest.raises(ProfileError):
            SymbolTable(symbols)


class TestSerialisation:
    def test_round_trip(self, table):
        loaded = SymbolTable.from_bytes(table.to_bytes())
        assert list(loaded) == list(table)
        assert loaded.address('idt_table') == TEXT + 0x6000
        assert loaded.lookup(TEXT + 0x3008) == ('init_task', 8)
        assert SymbolTable.from_bytes(bytearray(table.to_bytes())).get('_text') == TEXT

    def test_empty_table(self):
        loaded = SymbolTable.from_bytes(SymbolTable().to_bytes())
        assert len(loaded) == 0 and loaded.get('x') is None

    def test_unicode_names_survive(self):
        table = SymbolTable([(1, 'T', 'caf\u00e9'), (2, 't', 'x')])
        assert list(SymbolTable.from_bytes(table.to_bytes())) == list(table)

    @pytest.mark.parametrize('tamper, message', [
        (lambda b: b[:10], 'truncated'),
        (lambda b: b'XXXXXXXX' + b[8:], 'version'),
        (lambda b: b[:8] + struct.pack('<I', 2) + b[12:], 'version'),
        (lambda b: b[:-1], 'size'),
        (lambda b: b + b'\0', 'size'),
        (lambda b: b[:12] + struct.pack('<I', 1 << 30) + b[16:], 'size'),
        (lambda b: b[:-1] + b'X', 'checksum'),
        (lambda b: _recrc(b[:24 + 8 * 12] + b'\x01' + b[24 + 8 * 12 + 1:]), 'type'),
        (lambda b: _recrc(b[:-2] + b'\0y'), 'count'),
        (lambda b: _recrc(b[:-2] + b'\0\0'), 'count'),
        (lambda b: _recrc(b[:-1] + b'\xff'), 'undecodable'),
    ], ids=['short', 'magic', 'version', 'cut', 'extra', 'count', 'crc', 'type',
            'names', 'empty-name', 'utf8'])
    def test_rejects_damaged_cache(self, table, tamper, message):
        with pytest.raises(ProfileError, match=message):
            SymbolTable.from_bytes(tamper(table.to_bytes()))

    def test_loading_100k_symbols(self):
        rnd = random.Random(3)
        parts = ['sched', 'page', 'alloc', 'irq', 'tcp', 'sock', 'vfs', 'read', 'lock']
        symbols = [(TEXT + 16 * i, rnd.choice('TtDdBbRr'),
                    '_'.join(rnd.choice(parts) for _ in range(3)) + str(i))
                   for i in range(100000)]
        loaded = SymbolTable.from_bytes(SymbolTable(symbols).to_bytes())
        assert len(loaded) == 100000
        assert loaded.lookup(TEXT + 16 * 99999 + 3)[1] == 3


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (1 << 64) - 1), st.sampled_from('TtDdBbRrAWV'),
                          st.text(st.characters(min_codepoint=33, max_codepoint=0x2ff),
                                  min_size=1, max_size=30)), max_size=60))
def test_property_serialisation_round_trip(symbols):
    table = SymbolTable(symbols)
    assert list(SymbolTable.from_bytes(table.to_bytes())) == list(table)
    for address, _, name in symbols:
        assert table.lookup(address)[1] == 0
        assert name in {n for a, _, n in table if a == table.address(name)}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_property_damaged_cache_raises_profile_error(data):
    blob = bytearray(SymbolTable(SYMBOLS).to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = _recrc(blob)
    try:
        loaded = SymbolTable.from_bytes(bytes(blob))
    except ProfileError:
        return
    assert len(list(loaded)) == len(loaded)


class TestParsers:
    SYSTEM_MAP = ('ffffffff81000000 T _text\n'
                  'ffffffff81000000 T startup_64\n'
                  '\n'
                  '0000000000019a00 A cpu_number\n'
                  'ffffffff82a1aa40 D init_task\n')

    def test_system_map(self):
        symbols = parse_system_map(self.SYSTEM_MAP)
        assert symbols == [(TEXT, 'T', '_text'), (TEXT, 'T', 'startup_64'),
                           (0x19a00, 'A', 'cpu_number'), (0xffffffff82a1aa40, 'D', 'init_task')]
        assert SymbolTable(symbols).address('init_task') == 0xffffffff82a1aa40
        assert parse_system_map(self.SYSTEM_MAP.encode()) == symbols

    def test_debian_placeholder_system_map(self):
        placeholder = ('ffffffffffffffff B The real System.map is in the '
                       'linux-image-<version>-dbg package\n')
        assert len(placeholder) == 83
        with pytest.raises(ProfileError, match='placeholder'):
            parse_system_map(placeholder)

    @pytest.mark.parametrize('text, message', [
        ('', 'no symbols'),
        ('\n\n', 'no symbols'),
        ('ffffffff81000000 T\n', 'line 1'),
        ('ffffffff81000000 T _text\nzzzz T foo\n', 'line 2'),
        ('ffffffff81000000 T a b c\n', 'line 1'),
    ])
    def test_malformed_system_map(self, text, message):
        with pytest.raises(ProfileError, match=message):
            parse_system_map(text)

    KALLSYMS = ('ffffffff81000000 T _text\n'
                '0000000000019a00 A cpu_number\n'
                'ffffffffc0a01000 t ext4_helper\t[ext4]\n'
                'ffffffffc0a02000 T ext4_init\t[ext4]\n'
                'ffffffff82a1aa40 D init_task\n')

    def test_proc_kallsyms_skips_modules(self):
        assert parse_kallsyms(self.KALLSYMS) == [
            (TEXT, 'T', '_text'), (0x19a00, 'A', 'cpu_number'),
            (0xffffffff82a1aa40, 'D', 'init_task')]

    def test_proc_kallsyms_keeps_modules_on_request(self):
        names = [name for _, _, name in parse_kallsyms(self.KALLSYMS, modules=True)]
        assert names == ['_text', 'cpu_number', 'ext4_helper', 'ext4_init', 'init_task']

    def test_proc_kallsyms_without_privilege(self):
        text = '0000000000000000 T _text\n0000000000000000 D init_task\n'
        with pytest.raises(ProfileError, match='kptr_restrict'):
            parse_kallsyms(text)
