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

"""Tests of the BTF parser.

The core tests build their BTF with tests/unit/engine/btf_builder.py, so they always run
and can make the hostile shapes (cycles, wild ids, bad headers) guest memory could hold.
One extra test compares with pahole on a real kernel's BTF when there is one.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.engine.btf_builder import BtfBuilder
from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux import btf as btf_module
from vmi_agent.engine.linux.btf import MAX_DEPTH, Btf, BtfError, Member


def kernel_like(byteorder='little'):
    """A miniature kernel: task_struct, cred, list_head, enums and one of every kind.

    Returns (builder, ids by name) so that tests can add hostile types to a sane base.
    """
    b = BtfBuilder(byteorder)
    ids = {}
    ids['int'] = b.int('int', 4, signed=True)
    ids['uint'] = b.int('unsigned int', 4)
    ids['char'] = b.int('char', 1, signed=True)
    ids['ulong'] = b.int('long unsigned int', 8)
    ids['u64'] = b.typedef('u64', ids['ulong'])
    ids['pid_t'] = b.typedef('pid_t', ids['int'])
    ids['list_head'] = b.struct('list_head', 16, [('next', b.next_id + 1, 0),
                                                  ('prev', b.next_id + 1, 64)])
    ids['list_ptr'] = b.ptr(ids['list_head'])
    ids['comm'] = b.array(ids['char'], 16)
    kuid = b.struct('', 4, [('val', ids['uint'], 0)])
    ids['kuid_t'] = b.typedef('kuid_t', kuid)
    ids['cred'] = b.struct('cred', 12, [('usage', ids['int'], 0), ('uid', ids['kuid_t'], 32),
                                        ('gid', ids['kuid_t'], 64)])
    cred_ptr = b.ptr(b.qualifier('const', ids['cred']))
    ids['mm_fwd'] = b.fwd('mm_struct')
    mm_ptr = b.ptr(ids['mm_fwd'])
    ids['sched_entity'] = b.struct('sched_entity', 16, [('load', ids['ulong'], 0),
                                                        ('vruntime', ids['u64'], 64)])
    inner = b.union('', 8, [('rcu_users', ids['int'], 0), ('rcu', ids['ulong'], 0)])
    outer = b.struct('', 16, [('', inner, 0), ('on_cpu', ids['int'], 64)])
    task_ptr = b.ptr(b.next_id + 1)
    ids['task_struct'] = b.struct('task_struct', 112, [
        ('__state', ids['uint'], 0),
        ('flags', ids['uint'], 32),
        ('sched_reset_on_fork', ids['uint'], 64, 1),
        ('sched_contributes_to_load', ids['uint'], 65, 1),
        ('in_execve', ids['uint'], 75, 3),
        ('se', ids['sched_entity'], 128),
        ('tasks', ids['list_head'], 256),
        ('', outer, 384),
        ('pid', ids['pid_t'], 512),
        ('tgid', ids['pid_t'], 544),
        ('real_parent', task_ptr, 576),
        ('mm', mm_ptr, 640),
        ('cred', cred_ptr, 704),
        ('comm', ids['comm'], 768),
    ])
    ids['pid_type'] = b.enum('pid_type', {'PIDTYPE_PID': 0, 'PIDTYPE_TGID': 1})
    b.enum('', {'TASK_COMM_LEN': 16})
    b.enum('signed_e', {'NEG': -1, 'POS': 7}, signed=True)
    b.enum('unsigned_e', {'HIGH': 0xFFFFFFFF})
    b.enum64('big64', {'BIG': 1 << 63})
    b.enum64('neg64', {'SNEG': -5}, signed=True)
    # Old-style bitfields: kind_flag clear, the int type carries width and shift.
    three_bits = b.int('int', 4, bits=3)
    shifted = b.int('int', 4, bits=5, shift=3)
    ids['old_bits'] = b.struct('old_bits', 4, [('a', three_bits, 0), ('b', shifted, 0)])
    ids['matrix'] = b.array(b.array(ids['uint'], 4), 3)
    ids['volatile_int'] = b.qualifier('volatile', ids['int'])
    ids['restrict_ptr'] = b.qualifier('restrict', ids['list_ptr'])
    ids['user_ptr'] = b.ptr(b.type_tag('user', ids['char']))
    ids['double'] = b.float('double', 8)
    proto = b.func_proto(ids['int'], [('task', task_ptr), ('flags', ids['uint'])])
    ids['func'] = b.func('wake_up_process', proto)
    ids['var'] = b.var('jiffies', ids['ulong'])
    b.datasec('.data', 8, [(ids['var'], 0, 8)])
    b.decl_tag('btf_decl_tag', ids['func'], 0)
    ids['union_u'] = b.union('u', 8, [('a', ids['int'], 0), ('b', ids['ulong'], 0)])
    return b, ids


@pytest.fixture(name='kernel')
def kernel_fixture():
    """The miniature kernel's ids and its parsed BTF."""
    builder, ids = kernel_like()
    return Btf.parse(builder.build()), ids


# --- well-formed BTF --------------------------------------------------------------------


def test_parse_counts_types_and_reads_both_byte_orders(kernel):
    btf, ids = kernel
    big = Btf.parse(kernel_like('big')[0].build())
    assert len(btf) == len(big) > ids['task_struct']
    assert (btf.byteorder, big.byteorder) == ('little', 'big')
    assert btf.layout('task_struct') == big.layout('task_struct')
    assert big.enum('neg64') == {'SNEG': -5}
    assert big.member('task_struct', 'in_execve') == btf.member('task_struct', 'in_execve')


def test_parse_accepts_memoryview_bytearray_and_trailing_bytes():
    blob = kernel_like()[0].build(trailer=b'\xff' * 100)
    for data in (memoryview(blob), bytearray(blob)):
        assert Btf.parse(data).struct('cred').size == 12


def test_parse_rejects_what_is_not_bytes():
    with pytest.raises(TypeError):
        Btf.parse(4096)


def test_btf_error_is_a_profile_error():
    assert issubclass(BtfError, ProfileError)


def test_find_by_name_and_kind(kernel):
    btf, ids = kernel
    assert btf.find('task_struct') == ids['task_struct']
    assert btf.find('pid_t', 'typedef') == ids['pid_t']
    assert btf.find('u', ('struct', 'union')) == ids['union_u']
    assert btf.find('int', 'int') == ids['int']
    with pytest.raises(BtfError):
        btf.find('pid_t', 'struct')
    with pytest.raises(BtfError):
        btf.find('no_such_type')
    with pytest.raises(BtfError):
        btf.find('')
    with pytest.raises(ValueError):
        btf.find('task_struct', 'structure')


def test_find_prefers_a_definition_to_a_forward_declaration():
    b = BtfBuilder()
    fwd = b.fwd('thing')
    definition = b.struct('thing', 8, [])
    btf = Btf.parse(b.build())
    assert btf.find('thing') == definition
    assert btf.find('thing', 'fwd') == fwd
    assert btf.find('thing', 'struct') == definition


def test_find_returns_a_forward_declaration_when_alone(kernel):
    btf, ids = kernel
    assert btf.find('mm_struct') == ids['mm_fwd']
    with pytest.raises(BtfError):
        btf.struct('mm_struct')


def test_find_lowest_id_among_duplicates():
    b = BtfBuilder()
    first = b.struct('dup', 4, [])
    b.struct('dup', 8, [])
    assert Btf.parse(b.build()).struct('dup').type_id == first


def test_find_a_name_sharing_the_tail_of_another_string():
    b = BtfBuilder()
    b.string('task_struct')
    tail = b.raw(b.string('task_struct') + len('task_'), 4 << 24, 4)
    btf = Btf.parse(b.build())
    assert btf.find('struct') == tail
    assert btf.name_of(tail) == 'struct'
    with pytest.raises(BtfError):
        btf.find('task_struct')


def test_kind_and_name_of(kernel):
    btf, ids = kernel
    assert btf.kind_of(0) == 'void'
    assert btf.name_of(0) == ''
    assert btf.kind_of(ids['task_struct']) == 'struct'
    assert btf.kind_of(btf.find('big64')) == 'enum64'
    assert btf.kind_of(ids['func']) == 'func'
    assert btf.kind_of(ids['double']) == 'float'
    assert btf.name_of(ids['pid_t']) == 'pid_t'
    assert btf.name_of(ids['comm']) == ''
    with pytest.raises(BtfError):
        btf.kind_of(len(btf) + 1)
    with pytest.raises(BtfError):
        btf.name_of(-1)


def test_resolve_skips_typedefs_and_qualifiers(kernel):
    btf, ids = kernel
    assert btf.resolve(ids['pid_t']) == ids['int']
    assert btf.resolve(ids['volatile_int']) == ids['int']
    assert btf.resolve(ids['restrict_ptr']) == ids['list_ptr']
    assert btf.resolve(ids['kuid_t']) == btf.resolve(ids['kuid_t'])
    assert btf.kind_of(btf.resolve(ids['kuid_t'])) == 'struct'
    assert btf.resolve(0) == 0
    assert btf.resolve(ids['int']) == ids['int']


def test_size_of(kernel):
    btf, ids = kernel
    assert btf.size_of(ids['int']) == 4
    assert btf.size_of(ids['pid_t']) == 4
    assert btf.size_of(ids['list_ptr']) == 8
    assert btf.size_of(ids['comm']) == 16
    assert btf.size_of(ids['matrix']) == 48
    assert btf.size_of(ids['task_struct']) == 112
    assert btf.size_of(ids['var']) == 8
    assert btf.size_of(ids['double']) == 8
    assert btf.size_of(btf.find('.data')) == 8
    for sizeless in (0, ids['func'], ids['mm_fwd'], btf.find('btf_decl_tag')):
        with pytest.raises(BtfError):
            btf.size_of(sizeless)


def test_pointer_size_follows_long():
    b = BtfBuilder()
    b.int('long int', 4, signed=True)
    ptr = b.ptr(0)
    btf = Btf.parse(b.build())
    assert (btf.pointer_size, btf.size_of(ptr)) == (4, 4)
    assert Btf.parse(BtfBuilder().build()).pointer_size == 8


def test_struct_lists_direct_members(kernel):
    btf, ids = kernel
    task = btf.struct('task_struct')
    assert (task.name, task.kind, task.size, task.type_id) == (
        'task_struct', 'struct', 112, ids['task_struct'])
    names = [member.name for member in task.members]
    assert names[:3] == ['__state', 'flags', 'sched_reset_on_fork']
    assert '' in names and 'on_cpu' not in names
    assert btf.struct(ids['union_u']).kind == 'union'
    with pytest.raises(BtfError):
        btf.struct(ids['int'])
    with pytest.raises(BtfError):
        btf.struct('pid_t')


def test_member_offsets_and_kinds(kernel):
    btf, ids = kernel
    assert btf.member('task_struct', 'pid') == Member('pid', 64, 0, 0, ids['pid_t'], 4, 'int')
    assert btf.member('task_struct', 'tasks').offset == 32
    assert btf.member('task_struct', 'comm').kind == 'array'
    assert btf.member('task_struct', 'real_parent').kind == 'ptr'
    assert btf.member('task_struct', 'cred').offset == 88
    assert btf.member('cred', 'uid').kind == 'struct'


def test_member_paths_go_through_nested_structs(kernel):
    btf, _ = kernel
    vruntime = btf.member('task_struct', 'se.vruntime')
    assert (vruntime.name, vruntime.offset, vruntime.size) == ('vruntime', 24, 8)
    assert btf.member('task_struct', 'tasks.prev').offset == 40
    assert btf.member('cred', 'gid.val').offset == 8
    with pytest.raises(BtfError):
        btf.member('task_struct', 'real_parent.pid')      # a pointer, not a struct
    with pytest.raises(BtfError):
        btf.member('task_struct', 'pid.x')
    with pytest.raises(BtfError):
        btf.member('task_struct', 'se.nothing')
    with pytest.raises(BtfError):
        btf.member('task_struct', 'se..load')


def test_anonymous_members_are_flattened(kernel):
    btf, _ = kernel
    assert btf.member('task_struct', 'rcu_users').offset == 48
    assert btf.member('task_struct', 'rcu').offset == 48
    assert btf.member('task_struct', 'on_cpu').offset == 56
    with pytest.raises(BtfError):
        btf.member('task_struct', '')


def test_bitfields_with_kind_flag(kernel):
    btf, _ = kernel
    first = btf.member('task_struct', 'sched_reset_on_fork')
    assert (first.offset, first.bit_offset, first.bit_size, first.size) == (8, 0, 1, 4)
    second = btf.member('task_struct', 'sched_contributes_to_load')
    assert (second.offset, second.bit_offset, second.bit_size) == (8, 1, 1)
    third = btf.member('task_struct', 'in_execve')
    assert (third.offset, third.bit_offset, third.bit_size) == (9, 3, 3)
    # The documented read recipe gives the value back.
    image = bytearray(112)
    image[9] = 0b101 << 3
    span = (third.bit_offset + third.bit_size + 7) // 8
    raw = int.from_bytes(image[third.offset:third.offset + span], 'little')
    assert raw >> third.bit_offset & (1 << third.bit_size) - 1 == 0b101


def test_old_style_int_bitfields(kernel):
    btf, _ = kernel
    a = btf.member('old_bits', 'a')
    b = btf.member('old_bits', 'b')
    assert (a.offset, a.bit_offset, a.bit_size) == (0, 0, 3)
    assert (b.offset, b.bit_offset, b.bit_size) == (0, 3, 5)


def test_layout_is_flat_and_json_serialisable(kernel):
    btf, _ = kernel
    layout = btf.layout('task_struct')
    assert json.loads(json.dumps(layout)) == layout
    assert (layout['size'], layout['kind']) == (112, 'struct')
    members = layout['members']
    assert members['pid'] == {'offset': 64, 'size': 4, 'kind': 'int', 'type': 'int'}
    assert members['tasks'] == {'offset': 32, 'size': 16, 'kind': 'struct',
                                'type': 'list_head'}
    assert members['comm'] == {'offset': 96, 'size': 16, 'kind': 'array', 'count': 16,
                               'elem_size': 1, 'elem_kind': 'int', 'elem_type': 'char'}
    assert members['real_parent'] == {'offset': 72, 'size': 8, 'kind': 'ptr',
                                      'target': 'task_struct'}
    assert members['cred']['target'] == 'cred'        # through const
    assert members['mm']['target'] == 'mm_struct'     # a forward declaration
    assert members['in_execve'] == {'offset': 9, 'size': 4, 'kind': 'int', 'type':
                                    'unsigned int', 'bit_offset': 3, 'bit_size': 3}
    assert 'bit_offset' not in members['flags']
    assert members['rcu_users']['offset'] == 48 and members['on_cpu']['offset'] == 56
    assert '' not in members
    assert btf.layout('cred')['members']['uid'] == {'offset': 4, 'size': 4, 'kind': 'struct'}
    assert btf.layout('u') == {'size': 8, 'kind': 'union', 'members': {
        'a': {'offset': 0, 'size': 4, 'kind': 'int', 'type': 'int'},
        'b': {'offset': 0, 'size': 8, 'kind': 'int', 'type': 'long unsigned int'}}}


def test_layout_of_list_head_points_to_itself(kernel):
    btf, _ = kernel
    assert btf.layout('list_head')['members']['next']['target'] == 'list_head'


def test_enums(kernel):
    btf, _ = kernel
    assert btf.enum('pid_type') == {'PIDTYPE_PID': 0, 'PIDTYPE_TGID': 1}
    assert btf.enum('signed_e') == {'NEG': -1, 'POS': 7}
    assert btf.enum('unsigned_e') == {'HIGH': 0xFFFFFFFF}
    assert btf.enum('big64') == {'BIG': 1 << 63}
    assert btf.enum('neg64') == {'SNEG': -5}
    assert btf.enum(btf.find('pid_type')) == btf.enum('pid_type')
    with pytest.raises(BtfError):
        btf.enum('task_struct')
    with pytest.raises(BtfError):
        btf.enum(btf.find('task_struct'))


def test_enumerator_searches_every_enum(kernel):
    btf, _ = kernel
    assert btf.enumerator('TASK_COMM_LEN') == 16
    assert btf.enumerator('PIDTYPE_TGID') == 1
    assert btf.enumerator('SNEG') == -5
    with pytest.raises(BtfError):
        btf.enumerator('NO_SUCH')


def test_enumerator_with_conflicting_values_is_ambiguous():
    b = BtfBuilder()
    b.enum('a', {'X': 1, 'SAME': 3})
    b.enum('b', {'X': 2, 'SAME': 3})
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError, match='different values'):
        btf.enumerator('X')
    assert btf.enumerator('SAME') == 3
    assert btf.enum('b')['X'] == 2


# --- malformed headers and records ------------------------------------------------------


def parse_error(blob, match=None):
    """Assert that parsing ``blob`` fails with BtfError (matching ``match``)."""
    with pytest.raises(BtfError, match=match):
        Btf.parse(blob)


@pytest.mark.parametrize('header, match', [
    ({'magic': 0x1234}, 'magic'),
    ({'version': 2}, 'version'),
    ({'flags': 1}, 'flags'),
    ({'hdr_len': 20}, 'header length'),
    ({'type_len': 1 << 20}, 'past'),
    ({'str_off': 1 << 31}, 'past'),
    ({'str_len': 0, 'str_off': 0}, 'string section length'),
    ({'type_off': 2}, 'aligned'),
    ({'type_len': 6}, 'aligned'),
    ({'str_off': 0}, 'overlap'),
])
def test_bad_headers(header, match):
    builder, _ = kernel_like()
    parse_error(builder.build(**header), match)


def test_header_longer_than_the_blob():
    blob = bytearray(kernel_like()[0].build())
    blob[4:8] = (len(blob) + 1).to_bytes(4, 'little')
    parse_error(bytes(blob), 'header length')


def test_short_blobs():
    for length in range(24):
        parse_error(kernel_like()[0].build()[:length])


def test_longer_header_must_be_zero_padded():
    builder, _ = kernel_like()
    assert len(Btf.parse(builder.build(hdr_len=32))) == len(Btf.parse(builder.build()))
    blob = bytearray(builder.build(hdr_len=32))
    blob[30] = 1
    parse_error(bytes(blob), 'header fields')


def test_string_section_must_be_nul_delimited():
    b = BtfBuilder()
    b.int('int', 4)
    parse_error(b.build(strings=b'xint\0'), 'NUL')
    parse_error(b.build(strings=b'\0int'), 'NUL')


def test_oversized_input_is_refused(monkeypatch):
    blob = kernel_like()[0].build()
    monkeypatch.setattr(btf_module, 'MAX_BLOB_SIZE', len(blob) - 1)
    parse_error(blob, 'larger')


@pytest.mark.parametrize('info', [0, 20 << 24, 31 << 24, 1 << 24 | 1 << 16,
                                  1 << 24 | 1 << 29])
def test_unknown_kinds_and_reserved_bits(info):
    b = BtfBuilder()
    b.raw(0, info, 4, b.pack('I', 32))
    parse_error(b.build(), 'kind or info')


def test_truncated_records():
    b = BtfBuilder()
    b.struct('s', 8, [('a', 0, 0)])
    blob = b.build()
    records = b''.join(b.records)
    parse_error(b.build(type_len=len(records) - 4), 'past the type section')
    parse_error(b.build(type_len=8), 'truncated')
    assert len(Btf.parse(blob)) == 1


def test_huge_vlen_runs_past_the_section():
    b = BtfBuilder()
    b.raw(0, 4 << 24 | 0xFFFF, 8)
    parse_error(b.build(), 'past the type section')


def test_type_name_outside_the_string_section():
    b = BtfBuilder()
    b.raw(1000, 1 << 24, 4, b.pack('I', 32))
    parse_error(b.build(), 'name offset')


def test_too_many_types(monkeypatch):
    monkeypatch.setattr(btf_module, 'MAX_TYPE_ID', 3)
    b = BtfBuilder()
    for _ in range(4):
        b.ptr(0)
    parse_error(b.build(), 'more than 3')


# --- hostile references -----------------------------------------------------------------


def test_typedef_naming_itself():
    b = BtfBuilder()
    loop = b.typedef('loop', b.next_id)
    ab = b.typedef('a', b.next_id + 1)
    b.qualifier('const', ab)
    holder = b.struct('holder', 8, [('x', loop, 0)])
    btf = Btf.parse(b.build())
    for call in (btf.resolve, btf.size_of):
        for type_id in (loop, ab):
            with pytest.raises(BtfError, match='cycle'):
                call(type_id)
    with pytest.raises(BtfError, match='cycle'):
        btf.struct('holder')
    with pytest.raises(BtfError):
        btf.layout(holder)


def test_long_but_acyclic_chain_is_bounded():
    b = BtfBuilder()
    target = b.int('int', 4)
    for _ in range(MAX_DEPTH + 1):
        target = b.typedef('t', target)
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError):
        btf.resolve(target)


@pytest.mark.parametrize('kind', ['ptr', 'typedef', 'const', 'volatile', 'type_tag', 'var'])
def test_reference_out_of_range(kind):
    b = BtfBuilder()
    wild = b.add(kind, 'w' if kind in ('typedef', 'type_tag', 'var') else '', 999,
                 extra=b.pack('I', 0) if kind == 'var' else b'')
    holder = b.struct('holder', 8, [('x', wild, 0)])
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError, match='out of range'):
        btf.layout(holder)


def test_member_and_array_ids_out_of_range():
    b = BtfBuilder()
    b.struct('bad_member', 8, [('x', 12345, 0)])
    b.struct('bad_elem', 8, [('x', b.array(777, 2), 0)])
    btf = Btf.parse(b.build())
    for name in ('bad_member', 'bad_elem'):
        with pytest.raises(BtfError, match='out of range'):
            btf.struct(name)


def test_struct_containing_itself():
    b = BtfBuilder()
    direct = b.struct('direct', 8, [('self', b.next_id, 0)])
    via_array = b.struct('via_array', 16, [('self', b.next_id + 2, 0)])
    b.array(b.typedef('va_t', via_array), 1)
    btf = Btf.parse(b.build())
    for type_id in (direct, via_array):
        with pytest.raises(BtfError, match='contains itself'):
            btf.struct(type_id)


def test_anonymous_members_in_a_cycle():
    b = BtfBuilder()
    int_id = b.int('int', 4)
    first = b.next_id
    b.struct('', 8, [('', first + 1, 0), ('x', int_id, 32)])
    b.struct('', 8, [('', first, 0)])
    top = b.struct('top', 8, [('', first, 0)])
    btf = Btf.parse(b.build())
    assert btf.member(top, 'x').offset == 4
    with pytest.raises(BtfError, match='contain'):
        btf.member(top, 'missing')
    with pytest.raises(BtfError, match='contain'):
        btf.layout(top)


def test_deeply_nested_anonymous_members_are_bounded():
    b = BtfBuilder()
    inner = b.struct('', 4, [('leaf', b.int('int', 4), 0)])
    for _ in range(MAX_DEPTH + 2):
        inner = b.struct('', 4, [('', inner, 0)])
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError, match='deeper'):
        btf.member(inner, 'leaf')
    with pytest.raises(BtfError, match='deeper'):
        btf.layout(inner)


@pytest.mark.timeout(60)
def test_shared_anonymous_types_do_not_explode():
    """2000 anonymous members of a type with 2000 anonymous members of another..."""
    b = BtfBuilder()
    leaf = b.struct('', 4, [('x', b.int('int', 4), 0)])
    level = leaf
    for _ in range(3):
        level = b.struct('', 4, [('', level, 0)] * 2000)
    btf = Btf.parse(b.build())
    assert btf.member(level, 'x').offset == 0
    with pytest.raises(BtfError):
        btf.member(level, 'missing')
    assert list(btf.layout(level)['members']) == ['x']


@pytest.mark.parametrize('members, match', [
    ([('x', 1, 64)], 'past the struct'),
    ([('x', 1, 4)], 'byte-aligned'),
    ([('x', 1, 0, 33)], 'bitfield'),
    ([('x', 2, 0, 3)], 'bitfield'),
    ([('x', 1, 60, 8)], 'past the struct'),
    ([('x', 0, 0)], 'no size'),
])
def test_bad_members(members, match):
    b = BtfBuilder()
    b.int('int', 4)
    b.struct('inner', 4, [])
    b.struct('s', 8, members)
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError, match=match):
        btf.struct('s')


def test_member_and_enumerator_names_are_bounds_checked():
    b = BtfBuilder()
    int_id = b.int('int', 4)
    b.add('struct', 's', 4, 1, extra=b.pack('III', 5000, int_id, 0))
    b.add('enum', 'e', 4, 1, extra=b.pack('II', 5000, 0))
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError, match='string offset'):
        btf.struct('s')
    with pytest.raises(BtfError, match='string offset'):
        btf.enum('e')
    with pytest.raises(BtfError, match='string offset'):
        btf.enumerator('anything')


def test_huge_arrays_are_refused():
    b = BtfBuilder()
    int_id = b.int('int', 4)
    big = b.array(b.array(b.array(int_id, 0xFFFFFFFF), 0xFFFFFFFF), 2)
    wide = b.array(int_id, 0x40000000)
    btf = Btf.parse(b.build())
    with pytest.raises(BtfError, match='elements'):
        btf.size_of(big)
    with pytest.raises(BtfError, match='larger'):
        btf.size_of(wide)


def test_string_reads_stop_at_the_section_end():
    b = BtfBuilder()
    b.int('int', 4)
    btf = Btf.parse(b.build(trailer=b'not a string'))
    assert btf.name_of(1) == 'int'


def test_invalid_utf8_names_do_not_raise():
    b = BtfBuilder()
    b.int('int', 4)
    btf = Btf.parse(b.build(strings=b'\0\xff\xfeint\0'))
    assert btf.name_of(1) == '\ufffd\ufffdint'


# --- fuzzing ----------------------------------------------------------------------------


def exercise(btf):
    """Call every look-up on every type id and name; only BtfError may come out."""
    names = set()
    for type_id in range(-1, len(btf) + 2):
        for call in (btf.kind_of, btf.name_of, btf.resolve, btf.size_of, btf.struct,
                     btf.layout, btf.enum):
            try:
                result = call(type_id)
            except BtfError:
                continue
            if call is btf.name_of:
                names.add(result)
            elif call is btf.struct:
                for member in result.members:
                    names.add(member.name)
                    try:
                        btf.member(type_id, member.name or 'x')
                    except BtfError:
                        pass
            elif call is btf.enum:
                names.update(result)
    for name in names:
        for call in (btf.find, btf.struct, btf.enum, btf.enumerator):
            try:
                call(name)
            except BtfError:
                pass
    assert btf.pointer_size in (4, 8)


def parse_and_exercise(blob):
    """Parse possibly hostile bytes; exercise what parses."""
    try:
        btf = Btf.parse(blob)
    except BtfError:
        return
    exercise(btf)


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASE = kernel_like()[0].build()
INTERESTING = [0, 1, 2, 3, 4, 8, 12, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0x04000000, 0x84000000, 0x08000000, 0x03000000]


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(blob):
    parse_and_exercise(blob)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_after_a_valid_magic(rest):
    parse_and_exercise(b'\x9f\xeb\x01\x00' + rest)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(BASE)))
def test_fuzz_byte_mutations(edits, length):
    blob = bytearray(BASE)
    for position, value in edits:
        blob[position] = value
    parse_and_exercise(bytes(blob[:length]))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE) // 4 - 1),
                          st.one_of(st.sampled_from(INTERESTING), st.integers(0, 0xFFFFFFFF),
                                    st.integers(0, 80))),
                min_size=1, max_size=6))
def test_fuzz_word_mutations(edits):
    """Overwrite aligned 32-bit words (ids, offsets, info words) with telling values."""
    blob = bytearray(BASE)
    for word, value in edits:
        blob[word * 4:word * 4 + 4] = value.to_bytes(4, 'little')
    parse_and_exercise(bytes(blob))


SMALL = st.one_of(st.integers(0, 12), st.sampled_from(INTERESTING))
RECORD = st.tuples(st.integers(1, 19), st.integers(0, 1),
                   st.sampled_from(['', 'a', 'task_struct', 'long int', 'X']),
                   SMALL, st.lists(st.tuples(SMALL, SMALL, SMALL), max_size=4),
                   st.tuples(SMALL, SMALL, SMALL))


@FUZZ
@given(st.lists(RECORD, min_size=1, max_size=12))
def test_fuzz_random_types(records):
    """Well-formed records of every kind whose ids, sizes, offsets and names are random."""
    b = BtfBuilder()
    for kind, kind_flag, name, size_or_type, entries, fixed in records:
        fixed_words = btf_module._FIXED_EXTRA[kind] // 4
        entry_words = btf_module._VLEN_EXTRA[kind] // 4
        words = list(fixed[:fixed_words])
        for entry in entries if entry_words else ():
            words.extend(entry[:entry_words])
        extra = b''.join(b.pack('I', word) for word in words)
        vlen = len(entries) if entry_words else 0
        b.raw(b.string(name), kind_flag << 31 | kind << 24 | vlen, size_or_type, extra)
    parse_and_exercise(b.build())


def test_big_blob_parses():
    """100k types, the size of a real vmlinux's BTF (its parse time is benchmarked)."""
    b = BtfBuilder()
    int_id = b.int('int', 4)
    for index in range(50000):
        b.struct('s%d' % index, 8, [('a', int_id, 0), ('b', int_id, 32)])
        b.ptr(b.next_id - 1)
    btf = Btf.parse(b.build())
    assert len(btf) == 100001
    assert btf.member('s49999', 'b').offset == 4


# --- real kernel BTF (extra: runs only where there is one) ------------------------------


def real_btf_path():
    """A real vmlinux BTF: $NOVA_VMI_BTF, else this machine's own kernel's, else None."""
    for path in (os.environ.get('NOVA_VMI_BTF'), '/sys/kernel/btf/vmlinux'):
        if path and os.access(path, os.R_OK):
            return path
    return None


@pytest.fixture(name='real_btf', scope='module')
def real_btf_fixture():
    """(path, parsed Btf) of the real vmlinux BTF, parsed once for all its tests."""
    path = real_btf_path()
    with open(path, 'rb') as source:
        return path, Btf.parse(source.read())


PAHOLE_MEMBER = re.compile(r'\s(\w+)(?:\[[^\]]*\])*(?::(\d+))?(?: __attribute__\(\(.*\)\))?;'
                           r'\s+/\*\s+(\d+)(?::\s*(\d+))?\s+(\d+)\s+\*/')


@pytest.mark.skipif(not real_btf_path() or not shutil.which('pahole'),
                    reason='needs a real vmlinux BTF and pahole')
@pytest.mark.parametrize('struct_name', ['task_struct', 'module', 'list_head', 'cred',
                                         'mm_struct', 'file', 'inode', 'dentry', 'page'])
def test_real_btf_matches_pahole(real_btf, struct_name):
    path, btf = real_btf
    out = subprocess.run(['pahole', '-F', 'btf', '-C', struct_name, path],
                         capture_output=True, text=True, check=True).stdout
    layout = btf.layout(struct_name)
    compared = 0
    for line in out.splitlines():
        match = PAHOLE_MEMBER.search(line)
        if not match:
            continue
        name, bits, offset, bit, size = match.groups()
        entry = layout['members'].get(name)
        if entry is None:
            # Only members of a named member whose type is anonymous (pahole prints them
            # inside it) are not flattened into the struct, as in C.
            assert line.startswith('\t\t'), line
            continue
        if bits:
            assert entry['offset'] * 8 + entry['bit_offset'] == int(offset) * 8 + int(bit)
            assert entry['bit_size'] == int(bits)
        else:
            assert (entry['offset'], entry['size']) == (int(offset), int(size)), name
        compared += 1
    assert compared >= 2
    assert f'/* size: {layout["size"]},' in out
