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

"""The kernel's symbol table: name to address, address to name, and a compact cache form.

Symbols come from kallsyms (decoded from the kernel image or guest memory), from a
System.map, or from /proc/kallsyms text.  A table is immutable; :meth:`SymbolTable.shift`
gives the KASLR-relocated copy.  It is stored as parallel arrays sorted by address (an
``array('Q')``, one type character per symbol, a list of names) rather than one object per
symbol: ~100k symbols then load from the cache in milliseconds and cost a few MiB.

The cache form (:meth:`SymbolTable.to_bytes`) is read back from a cache directory that
anything on the host could have truncated or damaged, so :meth:`SymbolTable.from_bytes`
checks its header, sizes, CRC-32 and text before using it.
"""

import bisect
import operator
import re
import struct
import sys
import zlib
from array import array

from vmi_agent.engine.errors import ProfileError

_MAGIC = b'NVMISYMS'
_VERSION = 1
_HEADER = struct.Struct('<8sIIII')          # magic, version, count, names size, crc32
MAX_SYMBOLS = 1 << 22
_LITTLE = sys.byteorder == 'little'
_TYPES = re.compile('[\x21-\x7e]*')

# When a name repeats (static functions in different files, a weak default and its
# override), the caller almost always means the global text/data one: rank them first.
_PREFERENCE = {t: 3 for t in map(chr, range(0x21, 0x7f))}
_PREFERENCE.update({t: 1 for t in 'ACGINPSU'})
_PREFERENCE.update({t: 2 for t in 'VWvw'})
_PREFERENCE.update({t: 0 for t in 'BDRT'})
# Absolute symbols (the per-cpu offsets of x86-64 kernels before 6.15) are not
# relocated by KASLR.
_ABSOLUTE = 'Aa'

_PLACEHOLDER = 'The real System.map is in'


class SymbolNotFoundError(ProfileError, KeyError):
    """The kernel's symbol table has no symbol of this name."""

    def __init__(self, name):
        self.name = name
        super().__init__('kernel symbol %r not found' % name)

    def __str__(self):
        # KeyError would repr() the message; keep it readable.
        return ProfileError.__str__(self)


def _is_sorted(values):
    return all(map(operator.le, values, values[1:]))


class SymbolTable:
    """Immutable kernel symbol table, sorted by address."""

    __slots__ = ('_addresses', '_types', '_names', '_text', '_index')

    def __init__(self, symbols=()):
        """Build from (address, type letter, name) tuples, in any order."""
        ordered = sorted(symbols, key=lambda s: (s[0], _PREFERENCE.get(s[1], 3)))
        try:
            addresses = array('Q', [s[0] for s in ordered])
        except (OverflowError, TypeError):
            raise ProfileError('symbol addresses must be integers in [0, 2**64)') from None
        types = ''.join(s[1] for s in ordered)
        names = [s[2] for s in ordered]
        if len(types) != len(names) or not _TYPES.fullmatch(types):
            raise ProfileError('each symbol type must be one printable ASCII character')
        if '' in names or '\0'.join(names).count('\0') != max(len(names) - 1, 0):
            raise ProfileError('symbol names must be non-empty and free of NUL')
        self._set(addresses, types, names, None)

    def _set(self, addresses, types, names, text):
        """Adopt checked arrays; names come as a list or as NUL-joined text split later."""
        if len(addresses) > MAX_SYMBOLS:
            raise ProfileError('%d symbols is more than any kernel has' % len(addresses))
        self._addresses, self._types, self._names, self._text = addresses, types, names, text
        self._index = None

    def _name_list(self):
        """The names, split out of the cached text on first use.

        Splitting ~100k names costs more than the rest of loading a cache together, and
        a user that only resolves a few symbols never needs most of them.
        """
        if self._names is None:
            self._names = self._text.split('\0') if self._text else []
        return self._names

    def __len__(self):
        return len(self._addresses)

    def __iter__(self):
        return zip(self._addresses, self._types, self._name_list())

    def _name_index(self):
        """name -> position of its preferred symbol, built on first use."""
        if self._index is None:
            index = {}
            ranks = [_PREFERENCE[t] for t in self._types]
            for i, name in enumerate(self._name_list()):
                j = index.get(name)
                if j is None or ranks[i] < ranks[j]:
                    index[name] = i
            self._index = index
        return self._index

    def get(self, name, default=None):
        """Address of ``name`` (the global text/data one if it repeats), or ``default``."""
        i = self._name_index().get(name)
        return default if i is None else self._addresses[i]

    def address(self, name):
        """Address of ``name``; raises :class:`SymbolNotFoundError` if there is none."""
        i = self._name_index().get(name)
        if i is None:
            raise SymbolNotFoundError(name)
        return self._addresses[i]

    def lookup(self, address):
        """(name, offset) of the nearest symbol at or below ``address``, or None.

        Among symbols at the same address the preferred one (global text/data) is
        returned: the table is sorted by (address, preference).
        """
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0:
            return None
        base = self._addresses[i]
        i = bisect.bisect_left(self._addresses, base, 0, i)
        return self._name_list()[i], address - base

    def shift(self, delta):
        """Copy with every relocatable symbol moved by ``delta`` (the KASLR slide).

        Absolute symbols keep their value, as the kernel's relocation does not touch
        them.  The order survives unless absolute and relocated symbols cross.
        """
        try:
            moved = array('Q', [a if t in _ABSOLUTE else a + delta
                                for a, t in zip(self._addresses, self._types)])
        except OverflowError:
            raise ProfileError('shifting by %#x moves symbols out of the address space'
                               % delta) from None
        if not _is_sorted(moved):
            return SymbolTable(zip(moved, self._types, self._name_list()))
        table = SymbolTable.__new__(SymbolTable)
        table._set(moved, self._types, self._names, self._text)
        return table

    def to_bytes(self):
        """Serialise for the cache: header, u64 addresses, type letters, NUL-joined names."""
        addresses = array('Q', self._addresses)
        if not _LITTLE:
            addresses.byteswap()
        names = '\0'.join(self._name_list()).encode('utf-8')
        payload = addresses.tobytes() + self._types.encode('ascii') + names
        return _HEADER.pack(_MAGIC, _VERSION, len(self), len(names),
                            zlib.crc32(payload)) + payload

    @classmethod
    def from_bytes(cls, data):
        """Load :meth:`to_bytes` output, refusing anything truncated or damaged.

        The checks are those that run at C speed: header, sizes, CRC-32, text encoding,
        one type letter and one non-empty name per address.  The address order is not
        re-checked: only :meth:`to_bytes` of a checked table writes this format, and
        the CRC catches damage since (a deliberate forger could as well write wrong
        addresses in order).
        """
        data = memoryview(data).cast('B')
        if len(data) < _HEADER.size:
            raise ProfileError('symbol cache is truncated')
        magic, version, count, names_size, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ProfileError('not a symbol cache of this version')
        if count > MAX_SYMBOLS or len(data) != _HEADER.size + 9 * count + names_size:
            raise ProfileError('symbol cache size does not match its header')
        payload = data[_HEADER.size:]
        if zlib.crc32(payload) != crc:
            raise ProfileError('symbol cache checksum mismatch')
        addresses = array('Q')
        addresses.frombytes(payload[:8 * count])
        if not _LITTLE:
            addresses.byteswap()
        try:
            types = str(payload[8 * count:9 * count], 'ascii')
            text = str(payload[9 * count:], 'utf-8')
        except UnicodeDecodeError:
            raise ProfileError('symbol cache holds undecodable text') from None
        if not _TYPES.fullmatch(types):
            raise ProfileError('symbol cache holds a bad type letter')
        if count and (text.count('\0') != count - 1 or '\0\0' in text
                      or text.startswith('\0') or text.endswith('\0')) or (
                          not count and text):
            raise ProfileError('symbol cache names do not match its count')
        table = cls.__new__(cls)
        table._set(addresses, types, None, text)
        return table


def _parse(text, source, keep_modules):
    """Parse ``address type name [[module]]`` lines into tuples."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode('utf-8', 'replace')
    if _PLACEHOLDER in text:
        raise ProfileError('%s is a placeholder without symbols (Debian ships the real '
                           'one in the -dbg package); read them from the kernel image'
                           % source)
    symbols = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 4 and fields[3].startswith('[') and fields[3].endswith(']'):
            if not keep_modules:
                continue
            del fields[3]
        try:
            address, kind, name = fields
            symbols.append((int(address, 16), kind, name))
        except ValueError:
            raise ProfileError('%s line %d is not "address type name": %r'
                               % (source, number, line[:120])) from None
    if not symbols:
        raise ProfileError('%s holds no symbols' % source)
    return symbols


def parse_system_map(text):
    """(address, type, name) tuples of a System.map; refuses Debian's placeholder."""
    return _parse(text, 'System.map', keep_modules=False)


def parse_kallsyms(text, modules=False):
    """(address, type, name) tuples of /proc/kallsyms text.

    Module symbols (the lines with a ``[module]`` column) are dropped unless ``modules``
    is true: they are not part of the kernel image and do not move with its KASLR slide.
    A listing whose addresses are all zero was read without privilege (kptr_restrict)
    and is refused.
    """
    symbols = _parse(text, '/proc/kallsyms', keep_modules=modules)
    if not any(address for address, _, _ in symbols):
        raise ProfileError('/proc/kallsyms addresses are all zero: it was read without '
                           'the privilege to see them (kptr_restrict)')
    return symbols
