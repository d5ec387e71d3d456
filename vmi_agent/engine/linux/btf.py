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

"""BPF Type Format (BTF): the layouts of a Linux guest kernel's structures.

Kernels built with CONFIG_DEBUG_INFO_BTF (every Debian kernel) describe all their types in
BTF: the vmlinux ``.BTF`` section, kept in memory between ``__start_BTF`` and
``__stop_BTF``.  Reading offsets from the guest's own BTF means the engine needs no
profile per kernel build.  The format is the kernel's Documentation/bpf/btf.rst and
include/uapi/linux/btf.h.

BTF read from guest memory is attacker-controlled, so every value in it is checked before
it is used:

* :meth:`Btf.parse` checks the header and walks the type section once, recording each
  type's offset and kind.  After it, every type record (with its members) is known to lie
  inside the type section and every type's name inside the string section, whose last
  byte is a NUL, so no later read leaves the blob or runs past a string's end.
* Type ids are range-checked wherever they are followed; chains of typedefs, qualifiers
  and arrays are followed at most ``MAX_DEPTH`` hops, and anonymous members are expanded
  with cycle detection, so a typedef naming itself or a struct containing itself ends in
  :class:`BtfError` rather than in a hang or a RecursionError.
* Members are decoded lazily, once per type, and every cache holds at most one entry per
  type (or per type and name asked for), so memory stays proportional to the input.

Layouts are what matters to introspection; functions, variables, data sections and tags
are indexed (so their records are checked) but not decoded.
"""

import struct as _struct
from array import array
from dataclasses import dataclass, replace
import itertools
from operator import add

from vmi_agent.engine.errors import ProfileError


class BtfError(ProfileError):
    """The BTF is malformed, or it has no type or member of the name asked for."""


MAGIC = 0xEB9F
VERSION = 1
HEADER_SIZE = 24
# BTF_MAX_TYPE and BTF_MAX_NAME_OFFSET of the uapi header.
MAX_TYPE_ID = 0xFFFFF
MAX_NAME_OFFSET = 0xFFFFFF
# A vmlinux's BTF is a few MiB; refusing far larger input bounds the work a caller that
# read a guest-supplied length can be made to do.
MAX_BLOB_SIZE = 64 << 20
# How many typedef/qualifier/array hops, or nested anonymous members, are followed; the
# kernel's own verifier stops at 32 too (MAX_RESOLVE_DEPTH).
MAX_DEPTH = 32
# BTF sizes are u32; a computed size above that is the product of hostile counts.
MAX_SIZE = 0xFFFFFFFF

(_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT,
 _FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64) = range(1, 20)

# Indexed by kind; 0 is BTF_KIND_UNKN, which no record may have, so type id 0 (void) uses
# that slot.
KIND_NAMES = ('void', 'int', 'ptr', 'array', 'struct', 'union', 'enum', 'fwd', 'typedef',
              'volatile', 'const', 'restrict', 'func', 'func_proto', 'var', 'datasec',
              'float', 'decl_tag', 'type_tag', 'enum64')
# Bytes that follow a record's 12-byte btf_type: a fixed part plus one entry per vlen.
_FIXED_EXTRA = (0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_VLEN_EXTRA = (0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)
# The info word has vlen in bits 0-15, kind in 24-28 and kind_flag in 31; the other bits
# are unused today, and a record that sets them is of a newer format whose record sizes
# this parser cannot know.  Indexed by the info word's top byte, this gives (record length
# without vlen entries, bytes per vlen entry, kind), or None for a kind it cannot read.
_RECORD_LAYOUTS = tuple(
    (12 + _FIXED_EXTRA[top & 0x1F], _VLEN_EXTRA[top & 0x1F], top & 0x1F)
    if not top & 0x60 and _INT <= top & 0x1F <= _ENUM64 else None
    for top in range(256))

_SIZED = frozenset((_INT, _STRUCT, _UNION, _ENUM, _DATASEC, _FLOAT, _ENUM64))
# Kinds that name another type without changing its layout: resolve() skips them.
_QUALIFIERS = frozenset((_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG))
_AGGREGATES = frozenset((_STRUCT, _UNION))
_ENUMS = frozenset((_ENUM, _ENUM64))
# A bitfield's type must be integral (the kernel's verifier says the same).
_BITFIELD_BASES = frozenset((_INT, _ENUM, _ENUM64))


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a struct or union, placed relative to the struct asked about.

    ``offset`` is in bytes.  For a bitfield, ``bit_size`` is its width and ``bit_offset``
    its first bit within the byte at ``offset``, counted in the target's bit order (from
    the least significant bit on little-endian x86), so the value is the
    ``ceil((bit_offset + bit_size) / 8)`` bytes at ``offset``, shifted right by
    ``bit_offset`` and masked to ``bit_size`` bits; both are 0 for other members.
    ``size`` is the size of the member's declared type and ``kind`` the kind of that
    type once typedefs and qualifiers are skipped.
    """

    name: str
    offset: int
    bit_offset: int
    bit_size: int
    type_id: int
    size: int
    kind: str


@dataclass(frozen=True, slots=True)
class Struct:
    """A struct or union with its direct members; anonymous ones have the name ''."""

    name: str
    type_id: int
    kind: str
    size: int
    members: tuple


@dataclass(frozen=True, slots=True)
class _Aggregate:
    """A decoded struct with its members indexed for flattened name look-ups."""

    struct: Struct
    by_name: dict
    anonymous: tuple


class Btf:
    """An indexed BTF blob.  Build it with :meth:`parse`; look types up by name or id."""

    def __init__(self, buf, order, strings, offsets, kinds, name_offsets):
        """Keep the pieces :meth:`parse` checked; use :meth:`parse` instead."""
        self._buf = buf
        self._strings = strings
        self._offsets = offsets
        self._kinds = kinds
        self._name_offsets = name_offsets
        self._lowest = self._repeated = None
        self._type = _struct.Struct(order + 'III').unpack_from
        self._pair = _struct.Struct(order + 'II').unpack_from
        # Caches, each holding at most one entry per type id (or per id and name asked).
        self._resolved = {}
        self._bases = {}
        self._aggregates = {}
        self._flat = {}
        self._enumerators = None
        self.byteorder = 'little' if order == '<' else 'big'
        self._pointer_size = None

    @classmethod
    def parse(cls, data):
        """Check and index a BTF blob (raw ``.BTF`` section bytes).

        Bytes past the string and type sections are ignored, so a caller may hand over a
        page-rounded read of guest memory.  Raises :class:`BtfError` on malformed input.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError('BTF must be bytes-like, not %s' % type(data).__name__)
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > MAX_BLOB_SIZE:
            raise BtfError('BTF larger than %d bytes' % MAX_BLOB_SIZE)
        buf = bytes(data)
        if len(buf) < HEADER_SIZE:
            raise BtfError('BTF of %d bytes is shorter than its header' % len(buf))
        if buf[:2] == MAGIC.to_bytes(2, 'little'):
            order = '<'
        elif buf[:2] == MAGIC.to_bytes(2, 'big'):
            order = '>'
        else:
            raise BtfError('bad BTF magic %r' % buf[:2])
        (_, version, flags, hdr_len, type_off, type_len, str_off,
         str_len) = _struct.unpack_from(order + 'HBBIIIII', buf)
        if version != VERSION:
            raise BtfError('unsupported BTF version %d' % version)
        if flags:
            raise BtfError('unsupported BTF flags 0x%x' % flags)
        if not HEADER_SIZE <= hdr_len <= len(buf):
            raise BtfError('bad BTF header length %d' % hdr_len)
        if buf.count(0, HEADER_SIZE, hdr_len) != hdr_len - HEADER_SIZE:
            # A longer header from a newer format carries fields this parser would ignore.
            raise BtfError('unknown non-zero BTF header fields')
        type_start = hdr_len + type_off
        str_start = hdr_len + str_off
        if type_start + type_len > len(buf) or str_start + str_len > len(buf):
            raise BtfError('BTF sections extend past its %d bytes' % len(buf))
        if type_off % 4 or type_len % 4:
            raise BtfError('BTF type section is not 4-byte aligned')
        if type_len and type_start < str_start + str_len and str_start < type_start + type_len:
            raise BtfError('BTF type and string sections overlap')
        if not 0 < str_len <= MAX_NAME_OFFSET + 1:
            raise BtfError('bad BTF string section length %d' % str_len)
        strings = buf[str_start:str_start + str_len]
        if strings[0] or strings[-1]:
            raise BtfError('BTF string section must start and end with a NUL')
        offsets, kinds, name_offsets = _index(buf, order, type_start,
                                              type_start + type_len, len(strings))
        return cls(buf, order, strings, offsets, kinds, name_offsets)

    def __len__(self):
        """Number of types, not counting void (id 0): valid ids are 1..len(self)."""
        return len(self._offsets) - 1

    @property
    def pointer_size(self):
        """Pointer size in bytes: BTF does not record it, but C's long has it on Linux."""
        if self._pointer_size is None:
            self._pointer_size = 8
            for name in ('long unsigned int', 'long int'):
                sizes = [self._record(tid)[2] for tid in self._ids_named(name)
                         if self._kinds[tid] == _INT]
                if sizes and sizes[0] in (4, 8):
                    self._pointer_size = sizes[0]
                    break
        return self._pointer_size

    # --- single types -------------------------------------------------------------------

    def find(self, name, kind=None):
        """Return the id of the type called ``name``.

        ``kind`` is a kind name ('struct', 'union', 'enum', 'typedef', ...) or a collection
        of them; without it any kind matches.  A complete type wins over a forward
        declaration of the same name (unless ``kind`` is 'fwd'), then the lowest id.  Names
        are unique in kernel BTF but for a few small structs that different files define
        differently (16 in Debian's 6.1, such as ``irq_info``); use ids to tell those apart.
        """
        wanted = None
        if kind is not None:
            wanted = {kind} if isinstance(kind, str) else set(kind)
            unknown = wanted.difference(KIND_NAMES)
            if unknown:
                raise ValueError('unknown BTF kind(s) %s' % ', '.join(sorted(unknown)))
        fallback = None
        for tid in self._ids_named(name):
            kind_no = self._kinds[tid]
            if wanted is not None and KIND_NAMES[kind_no] not in wanted:
                continue
            if kind_no != _FWD:
                return tid
            if fallback is None:
                fallback = tid
        if fallback is None:
            raise BtfError('no %s named %r in BTF'
                           % ('/'.join(sorted(wanted)) if wanted else 'type', name))
        return fallback

    def kind_of(self, type_id):
        """Kind name of a type ('void' for id 0)."""
        return KIND_NAMES[self._kind(type_id)]

    def name_of(self, type_id):
        """Name of a type, '' for void and anonymous types."""
        if type_id == 0:
            return ''
        return self._string(self._record(type_id)[0])

    def resolve(self, type_id):
        """Skip typedefs, const, volatile, restrict and type tags; return the id reached."""
        known = self._resolved.get(type_id)
        if known is not None:
            return known
        start = type_id
        for _ in range(MAX_DEPTH):
            if type_id == 0 or self._kind(type_id) not in _QUALIFIERS:
                self._resolved[start] = type_id
                return type_id
            type_id = self._record(type_id)[2]
        raise BtfError('typedef/qualifier chain longer than %d types (a cycle?)' % MAX_DEPTH)

    def size_of(self, type_id):
        """Size in bytes of a type; BtfError for void, functions and forward declarations."""
        base, count = self._base(type_id)
        kind = self._kind(base)
        if kind in _SIZED:
            size = self._record(base)[2]
        elif kind == _PTR:
            size = self.pointer_size
        else:
            raise BtfError('type %d (%s) has no size' % (base, KIND_NAMES[kind]))
        if size * count > MAX_SIZE:
            raise BtfError('type %d is larger than %d bytes' % (type_id, MAX_SIZE))
        return size * count

    # --- structs ------------------------------------------------------------------------

    def struct(self, name):
        """The struct or union called ``name`` (or with that type id)."""
        return self._aggregate(self._struct_id(name)).struct

    def member(self, struct_name, path):
        """The member reached by ``path`` ('a.b.c') from a struct or union.

        Each step after the first goes into a struct or union member (not through a
        pointer).  Members of anonymous structs and unions are found by their own name, as
        in C.  The returned member's offset is from the start of ``struct_name`` and its
        name is the last step of ``path``.
        """
        type_id = self._struct_id(struct_name)
        offset = 0
        found = None
        for step in path.split('.'):
            if found is not None:
                if found.bit_size or found.kind not in ('struct', 'union'):
                    raise BtfError('%r in %r is not a struct or union' % (found.name, path))
                type_id = self.resolve(found.type_id)
            found = self._lookup(type_id, step, frozenset())
            if found is None:
                raise BtfError('%s %r has no member %r'
                               % (self.kind_of(type_id), self.name_of(type_id), step))
            offset += found.offset
        return replace(found, offset=offset)

    def layout(self, struct_name):
        """A JSON-serialisable description of a struct, anonymous members flattened.

        ``{"size": N, "kind": "struct", "members": {name: {"offset", "size", "kind",
        ...}}}`` where a member may also have "bit_offset"/"bit_size" (bitfields),
        "type" (name of its type, typedefs skipped), "target" (the struct or union a
        pointer points to), "count"/"elem_size"/"elem_kind"/"elem_type" (arrays).
        """
        type_id = self._struct_id(struct_name)
        aggregate = self._aggregate(type_id)
        members = {}
        self._flatten(type_id, 0, members, frozenset((type_id,)), set())
        return {'size': aggregate.struct.size, 'kind': aggregate.struct.kind,
                'members': members}

    # --- enums --------------------------------------------------------------------------

    def enum(self, name):
        """Enumerators of the enum called ``name`` (or with that type id), by name."""
        type_id = name if isinstance(name, int) else self.find(name, ('enum', 'enum64'))
        if self._kind(type_id) not in _ENUMS:
            raise BtfError('type %d is not an enum' % type_id)
        values = {}
        for enumerator, value in self._enumerate(type_id):
            values.setdefault(enumerator, value)
        return values

    def enumerator(self, name):
        """Value of the enumerator ``name``, whichever enum (named or not) declares it.

        Kernel constants often live in anonymous enums, hence this look-up.  A name that
        enums declare with different values is ambiguous: BtfError, use :meth:`enum`.
        """
        if self._enumerators is None:
            self._enumerators = self._index_enumerators()
        value = self._enumerators.get(name)
        if value is None:
            raise BtfError('no enumerator named %r in BTF' % name)
        if value is _AMBIGUOUS:
            raise BtfError('enumerator %r has different values in different enums' % name)
        return value

    # --- internals ----------------------------------------------------------------------

    def _ids_named(self, name):
        """Ids of the types called ``name``, lowest first."""
        if self._lowest is None:
            self._lowest, self._repeated = self._index_names()
        key = name.encode('utf-8', 'replace')
        ids = self._repeated.get(key)
        if ids is None:
            lowest = self._lowest.get(key)
            ids = () if lowest is None else (lowest,)
        return ids

    def _index_names(self):
        """Index types by name on the first look-up: ({name: lowest id}, {name: all ids}).

        The parse records name offsets only, so that callers who never look a name up do
        not pay for this.  It is built with C-speed primitives, since a Python loop over
        100k names costs about as much as the parse: splitting the string section names
        every string start; an offset into the middle of a string (a writer may share a
        tail between names) is read on its own; names are unique but for a few hundred,
        whose ids alone are listed.
        """
        strings = self._strings
        parts = strings.split(b'\0')
        starts = map(add, itertools.accumulate(map(len, parts), initial=0), itertools.count())
        names = list(map(dict(zip(starts, parts)).get, self._name_offsets))
        for type_id in [type_id for type_id, name in enumerate(names) if name is None]:
            offset = self._name_offsets[type_id]
            names[type_id] = strings[offset:strings.index(0, offset)]
        lowest = dict(zip(reversed(names), range(len(names) - 1, -1, -1)))
        lowest.pop(b'', None)
        repeated = {}
        for type_id in [type_id for type_id, name in enumerate(names)
                        if name and lowest[name] != type_id]:
            repeated.setdefault(names[type_id], [lowest[names[type_id]]]).append(type_id)
        return lowest, repeated

    def _kind(self, type_id):
        """Kind number of a type id after a range check (0 for void)."""
        if not 0 <= type_id < len(self._offsets):
            raise BtfError('type id %d out of range (the last is %d)' % (type_id, len(self)))
        return self._kinds[type_id]

    def _record(self, type_id):
        """(name_off, info, size_or_type) of a type other than void."""
        if not 0 < type_id < len(self._offsets):
            raise BtfError('type id %d out of range (the last is %d)' % (type_id, len(self)))
        return self._type(self._buf, self._offsets[type_id])

    def _string(self, offset):
        """The NUL-terminated string at ``offset``; the string section ends in a NUL."""
        if offset >= len(self._strings):
            raise BtfError('string offset %d outside the string section' % offset)
        end = self._strings.index(0, offset)
        return self._strings[offset:end].decode('utf-8', 'replace')

    def _base(self, type_id):
        """Skip qualifiers, variables and arrays: (type reached, product of array counts).

        Kept per type, so that a struct whose thousands of members share a long chain pays
        for the chain once.
        """
        known = self._bases.get(type_id)
        if known is not None:
            return known
        start = type_id
        count = 1
        for _ in range(MAX_DEPTH):
            kind = self._kind(type_id)
            if kind in _QUALIFIERS or kind == _VAR:
                type_id = self._record(type_id)[2]
            elif kind == _ARRAY:
                type_id, _, nelems = self._type(self._buf, self._offsets[type_id] + 12)
                count *= nelems
                if count > MAX_SIZE:
                    raise BtfError('array of more than %d elements' % MAX_SIZE)
            else:
                known = self._bases[start] = type_id, count
                return known
        raise BtfError('type chain longer than %d types (a cycle?)' % MAX_DEPTH)

    def _struct_id(self, name):
        """Type id of the struct or union called ``name`` (an int is taken as an id)."""
        if isinstance(name, int):
            return name
        return self.find(name, ('struct', 'union'))

    def _aggregate(self, type_id):
        """Decode (once) and check the members of a struct or union."""
        cached = self._aggregates.get(type_id)
        if cached is not None:
            return cached
        kind = self._kind(type_id)
        if kind not in _AGGREGATES:
            raise BtfError('type %d is a %s, not a struct or union'
                           % (type_id, KIND_NAMES[kind]))
        name_off, info, size = self._record(type_id)
        kind_flag = info >> 31
        base = self._offsets[type_id] + 12
        members = []
        for index in range(info & 0xFFFF):
            members.append(self._member(type_id, size, kind_flag,
                                        *self._type(self._buf, base + 12 * index)))
        struct = Struct(self._string(name_off), type_id, KIND_NAMES[kind], size,
                        tuple(members))
        by_name = {}
        for member in members:
            if member.name:
                by_name.setdefault(member.name, member)
        anonymous = tuple(m for m in members
                          if not m.name and m.kind in ('struct', 'union'))
        cached = self._aggregates[type_id] = _Aggregate(struct, by_name, anonymous)
        return cached

    def _member(self, owner, owner_size, kind_flag, name_off, type_id, placement):
        """Decode and check one btf_member of struct ``owner``."""
        name = self._string(name_off)
        if kind_flag:
            bit_pos, bit_size = placement & 0xFFFFFF, placement >> 24
        else:
            bit_pos, bit_size = placement, 0
        resolved = self.resolve(type_id)
        kind = self._kind(resolved)
        if self._base(type_id)[0] == owner:
            raise BtfError('struct %d contains itself' % owner)
        size = self.size_of(type_id)
        if not bit_size and kind == _INT:
            # Old-style bitfield: kind_flag clear and the int type carries width and shift.
            encoding = self._pair(self._buf, self._offsets[resolved] + 12)[0]
            int_bits, int_shift = encoding & 0xFF, encoding >> 16 & 0xFF
            if int_shift or int_bits != size * 8:
                bit_pos += int_shift
                bit_size = int_bits
        if bit_size:
            if kind not in _BITFIELD_BASES or not 0 < bit_size <= size * 8:
                raise BtfError('member %r of type %d is a bad bitfield' % (name, owner))
            end = bit_pos + bit_size
        elif bit_pos % 8:
            raise BtfError('member %r of type %d is not byte-aligned' % (name, owner))
        else:
            end = bit_pos + size * 8
        if end > owner_size * 8:
            raise BtfError('member %r of type %d ends past the struct' % (name, owner))
        bit_offset = bit_pos % 8 if bit_size else 0
        return Member(name, bit_pos // 8, bit_offset, bit_size, type_id, size,
                      KIND_NAMES[kind])

    def _lookup(self, type_id, name, active):
        """Member ``name`` of an aggregate, searching anonymous members as C does.

        Results are memoised per (type, name) so that hostile BTF with many anonymous
        members of the same types cannot make the search exponential; ``active`` holds the
        aggregates being searched, so an anonymous member containing its own struct is
        reported instead of followed.
        """
        key = (type_id, name)
        if key in self._flat:
            return self._flat[key]
        if type_id in active:
            raise BtfError('anonymous members of type %d contain it' % type_id)
        if len(active) >= MAX_DEPTH:
            raise BtfError('anonymous members nested deeper than %d' % MAX_DEPTH)
        aggregate = self._aggregate(type_id)
        found = aggregate.by_name.get(name)
        if found is None:
            inside = active | {type_id}
            for anonymous in aggregate.anonymous:
                inner = self._lookup(self.resolve(anonymous.type_id), name, inside)
                if inner is not None:
                    found = replace(inner, offset=inner.offset + anonymous.offset)
                    break
        self._flat[key] = found
        return found

    def _flatten(self, type_id, base, out, active, expanded):
        """Add the members of an aggregate at ``base`` to ``out``, expanding anonymous ones.

        The first member of a name wins, as C allows no duplicates; an anonymous type
        already expanded only repeats names, so it is skipped, which keeps the work linear
        in the input however hostile BTF shares anonymous types.
        """
        for member in self._aggregate(type_id).struct.members:
            if member.name:
                if member.name not in out:
                    out[member.name] = self._describe(member, base)
                continue
            if member.kind not in ('struct', 'union'):
                continue
            inner = self.resolve(member.type_id)
            if inner in active:
                raise BtfError('anonymous members of type %d contain it' % inner)
            if inner in expanded:
                continue
            if len(active) >= MAX_DEPTH:
                raise BtfError('anonymous members nested deeper than %d' % MAX_DEPTH)
            expanded.add(inner)
            self._flatten(inner, base + member.offset, out, active | {inner}, expanded)

    def _describe(self, member, base):
        """The layout() entry of one member placed at ``base`` bytes."""
        entry = {'offset': base + member.offset, 'size': member.size, 'kind': member.kind}
        if member.bit_size:
            entry['bit_offset'] = member.bit_offset
            entry['bit_size'] = member.bit_size
        resolved = self.resolve(member.type_id)
        type_name = self.name_of(resolved)
        if type_name:
            entry['type'] = type_name
        if member.kind == 'ptr':
            target = self.resolve(self._record(resolved)[2])
            if self._kind(target) in (_STRUCT, _UNION, _FWD) and self.name_of(target):
                entry['target'] = self.name_of(target)
        elif member.kind == 'array':
            elem, _, count = self._type(self._buf, self._offsets[resolved] + 12)
            entry['count'] = count
            entry['elem_size'] = self.size_of(elem)
            entry['elem_kind'] = self.kind_of(self.resolve(elem))
            elem_name = self.name_of(self.resolve(elem))
            if elem_name:
                entry['elem_type'] = elem_name
        return entry

    def _enumerate(self, type_id):
        """Yield (name, value) of each enumerator of an enum or enum64 type."""
        _, info, _ = self._record(type_id)
        signed = info >> 31
        base = self._offsets[type_id] + 12
        if self._kinds[type_id] == _ENUM:
            for index in range(info & 0xFFFF):
                name_off, value = self._pair(self._buf, base + 8 * index)
                if signed and value >= 1 << 31:
                    value -= 1 << 32
                yield self._string(name_off), value
        else:
            for index in range(info & 0xFFFF):
                name_off, low, high = self._type(self._buf, base + 12 * index)
                value = high << 32 | low
                if signed and value >= 1 << 63:
                    value -= 1 << 64
                yield self._string(name_off), value

    def _index_enumerators(self):
        """Map every enumerator name to its value, or to _AMBIGUOUS if enums disagree."""
        index = {}
        for type_id, kind in enumerate(self._kinds):
            if kind in _ENUMS:
                for name, value in self._enumerate(type_id):
                    if index.setdefault(name, value) != value:
                        index[name] = _AMBIGUOUS
        return index


_AMBIGUOUS = object()


def _index(buf, order, start, end, str_len):
    """Walk the type section once: each type's offset, kind and name offset.

    This is the only pass over all types, so it checks only what makes later reads safe:
    the kind is known (it gives the record's length), the record ends inside the section
    and the name offset is inside the string section.
    """
    unpack = _struct.Struct(order + 'II').unpack_from
    layouts = _RECORD_LAYOUTS
    offsets = array('I', [0])
    name_offsets = array('I', [0])
    kinds = bytearray(1)
    add_offset, add_name, add_kind = offsets.append, name_offsets.append, kinds.append
    pos = start
    while pos < end:
        if end - pos < 12:
            raise BtfError('truncated BTF type record at byte %d' % pos)
        name_off, info = unpack(buf, pos)
        layout = layouts[info >> 24]
        if layout is None or info & 0xFF0000:
            raise BtfError('BTF type record at byte %d has unknown kind or info 0x%x'
                           % (pos, info))
        following = pos + layout[0] + layout[1] * (info & 0xFFFF)
        if following > end:
            raise BtfError('BTF type record at byte %d runs past the type section' % pos)
        if name_off >= str_len:
            raise BtfError('BTF type record at byte %d has a bad name offset' % pos)
        add_offset(pos)
        add_name(name_off)
        add_kind(layout[2])
        pos = following
    if len(offsets) > MAX_TYPE_ID + 1:
        raise BtfError('more than %d BTF types' % MAX_TYPE_ID)
    return offsets, kinds, name_offsets
