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

"""Build BTF blobs for tests.

Tests need BTF they control: well-formed types to check decoding, and hostile ones (self
references, wild ids, bad headers) that a real kernel would never emit.  The builder
writes records exactly as include/uapi/linux/btf.h lays them out; ``raw`` and the header
overrides of ``build`` let a test write anything at all.
"""

import struct

HEADER_FIELDS = ('magic', 'version', 'flags', 'hdr_len', 'type_off', 'type_len', 'str_off',
                 'str_len')
KINDS = {'int': 1, 'ptr': 2, 'array': 3, 'struct': 4, 'union': 5, 'enum': 6, 'fwd': 7,
         'typedef': 8, 'volatile': 9, 'const': 10, 'restrict': 11, 'func': 12,
         'func_proto': 13, 'var': 14, 'datasec': 15, 'float': 16, 'decl_tag': 17,
         'type_tag': 18, 'enum64': 19}


class BtfBuilder:
    """Accumulates types; each adding method returns the new type's id."""

    def __init__(self, byteorder='little'):
        """Start an empty BTF in the given byte order."""
        self.order = '<' if byteorder == 'little' else '>'
        self.records = []
        self.strings = bytearray(b'\0')
        self._string_offsets = {'': 0}

    @property
    def next_id(self):
        """Id the next type added will get, for types that refer forward."""
        return len(self.records) + 1

    def string(self, text):
        """Offset of ``text`` in the string section, adding it once."""
        if text not in self._string_offsets:
            self._string_offsets[text] = len(self.strings)
            self.strings += text.encode() + b'\0'
        return self._string_offsets[text]

    def pack(self, fmt, *values):
        """Pack values in the builder's byte order (for hand-written ``extra`` bytes)."""
        return struct.pack(self.order + fmt, *values)

    def raw(self, name_off, info, size_or_type, extra=b''):
        """Append a record as given, however wrong."""
        self.records.append(self.pack('III', name_off, info, size_or_type) + extra)
        return len(self.records)

    def add(self, kind, name, size_or_type, vlen=0, kind_flag=0, extra=b''):
        """Append a record of ``kind`` (a kind name) with a name from the string table."""
        info = kind_flag << 31 | KINDS[kind] << 24 | vlen
        return self.raw(self.string(name), info, size_or_type, extra)

    def int(self, name, size, signed=False, bits=None, shift=0):
        """An integer; ``bits``/``shift`` below its size make an old-style bitfield type."""
        data = (1 if signed else 0) << 24 | shift << 16 | (size * 8 if bits is None else bits)
        return self.add('int', name, size, extra=self.pack('I', data))

    def float(self, name, size):
        """A floating-point type."""
        return self.add('float', name, size)

    def ptr(self, target):
        """A pointer to ``target``."""
        return self.add('ptr', '', target)

    def array(self, elem, count, index_type=None):
        """An array of ``count`` ``elem``; the index type is only recorded."""
        index_type = elem if index_type is None else index_type
        return self.add('array', '', 0, extra=self.pack('III', elem, index_type, count))

    def struct(self, name, size, members, union=False, kind_flag=None):
        """A struct (or union) from (name, type, bit offset[, bitfield size]) tuples.

        kind_flag is set when any member has a bitfield size, as pahole does, unless given.
        """
        if kind_flag is None:
            kind_flag = int(any(len(member) > 3 and member[3] for member in members))
        extra = b''
        for member in members:
            name_, type_id, bit_offset = member[:3]
            bitfield = member[3] if len(member) > 3 else 0
            placement = bitfield << 24 | bit_offset if kind_flag else bit_offset
            extra += self.pack('III', self.string(name_), type_id, placement)
        return self.add('union' if union else 'struct', name, size, len(members), kind_flag,
                        extra)

    def union(self, name, size, members, kind_flag=None):
        """A union; see :meth:`struct`."""
        return self.struct(name, size, members, union=True, kind_flag=kind_flag)

    def enum(self, name, values, size=4, signed=False):
        """A 32-bit enum from a {name: value} dict (values as the kernel stores them)."""
        extra = b''.join(self.pack('I', self.string(key)) + self.pack('i' if signed else 'I',
                                                                      value)
                         for key, value in values.items())
        return self.add('enum', name, size, len(values), int(signed), extra)

    def enum64(self, name, values, size=8, signed=False):
        """A 64-bit enum from a {name: value} dict."""
        extra = b''
        for key, value in values.items():
            value &= (1 << 64) - 1
            extra += self.pack('III', self.string(key), value & 0xFFFFFFFF, value >> 32)
        return self.add('enum64', name, size, len(values), int(signed), extra)

    def fwd(self, name, union=False):
        """A forward declaration of a struct (or union)."""
        return self.add('fwd', name, 0, kind_flag=int(union))

    def typedef(self, name, target):
        """A typedef."""
        return self.add('typedef', name, target)

    def qualifier(self, kind, target):
        """A 'const', 'volatile' or 'restrict' of ``target``."""
        return self.add(kind, '', target)

    def type_tag(self, name, target):
        """A type tag such as __user."""
        return self.add('type_tag', name, target)

    def func_proto(self, returns, params):
        """A function prototype from (name, type) parameters."""
        extra = b''.join(self.pack('II', self.string(name), type_id)
                         for name, type_id in params)
        return self.add('func_proto', '', returns, len(params), extra=extra)

    def func(self, name, proto, linkage=1):
        """A function; its linkage is stored in vlen."""
        return self.add('func', name, proto, linkage)

    def var(self, name, type_id, linkage=1):
        """A variable."""
        return self.add('var', name, type_id, extra=self.pack('I', linkage))

    def datasec(self, name, size, entries):
        """A data section from (var type, offset, size) entries."""
        extra = b''.join(self.pack('III', *entry) for entry in entries)
        return self.add('datasec', name, size, len(entries), extra=extra)

    def decl_tag(self, name, target, component_idx=-1):
        """A declaration tag on ``target`` (or on one of its members)."""
        return self.add('decl_tag', name, target, extra=self.pack('i', component_idx))

    def build(self, strings=None, trailer=b'', **header):
        """The blob: header, type section, string section, ``trailer``.

        ``header`` overrides any header field (magic, version, flags, hdr_len, type_off,
        type_len, str_off, str_len); a hdr_len above 24 is padded with zeros.
        """
        types = b''.join(self.records)
        strings = bytes(self.strings) if strings is None else strings
        fields = {'magic': 0xEB9F, 'version': 1, 'flags': 0, 'hdr_len': 24, 'type_off': 0,
                  'type_len': len(types), 'str_off': len(types), 'str_len': len(strings)}
        unknown = set(header).difference(HEADER_FIELDS)
        if unknown:
            raise TypeError('not BTF header fields: %s' % ', '.join(sorted(unknown)))
        fields.update(header)
        head = self.pack('HBBIIIII', *(fields[key] for key in HEADER_FIELDS))
        head += bytes(max(0, fields['hdr_len'] - len(head)))
        return head + types + strings + trailer
