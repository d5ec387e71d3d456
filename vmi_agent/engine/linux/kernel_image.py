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

"""The kernel image file: unpack a bzImage and read the vmlinux ELF inside it.

Distribution kernels ship only the compressed ``vmlinuz`` (and a placeholder System.map),
so the profile has to be derived from the kernel itself.  On x86 the compressed payload of
a bzImage is the stripped ``vmlinux`` ELF (``arch/x86/boot/compressed`` parses it as ELF
when it relocates the kernel), so unpacking it gives back section headers, program
headers and the GNU build-id note, but no symbol table: symbols come from kallsyms (see
:mod:`vmi_agent.engine.linux.kallsyms`), whose tables :meth:`ElfImage.loaded_image` lays
out exactly as the kernel sits in guest-physical memory.

The files read here come from the host's package cache rather than from the guest, but
every length and offset is still checked, and decompression output is bounded, so that a
corrupt or hostile file fails with :class:`KernelImageError` instead of exhausting memory.
"""

import bz2
import functools
import lzma
import struct
import zlib
from collections import namedtuple

from vmi_agent.engine.errors import ProfileError

# No x86-64 vmlinux comes near this (Debian's is ~63 MiB); it bounds what a corrupt or
# hostile payload can make us allocate.
MAX_VMLINUX_SIZE = 512 << 20
# Loading a vmlinux lays its segments out contiguously; the span is bounded for the
# same reason (bss is not materialised, so real kernels need ~40-70 MiB).
MAX_LOADED_SPAN = 512 << 20

ELF_MAGIC = b'\x7fELF'

_SETUP_SECTS = 0x1f1
_HDRS_OFFSET = 0x202
_VERSION_OFFSET = 0x206
_PAYLOAD_OFFSET = 0x248
_MIN_PAYLOAD_PROTOCOL = 0x208      # payload_offset/length exist from boot protocol 2.08

_PT_LOAD = 1
_PT_NOTE = 4
_SHT_SYMTAB = 2
_SHT_NOTE = 7
_SHT_NOBITS = 8
_SHF_WRITE = 0x1
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
_SHN_UNDEF = 0
_SHN_LORESERVE = 0xff00
_SHN_ABS = 0xfff1
_STB_LOCAL = 0
_STB_WEAK = 2
_STT_OBJECT = 1
_STT_SECTION = 3
_STT_FILE = 4
_NT_GNU_BUILD_ID = 3

_EHDR = struct.Struct('<16sHHIQQQIHHHHHH')
_PHDR = struct.Struct('<IIQQQQQQ')
_SHDR = struct.Struct('<IIQQQQIIQQ')
_SYM = struct.Struct('<IBBHQQ')
_NHDR = struct.Struct('<III')


class KernelImageError(ProfileError):
    """The kernel image file is not a bzImage/vmlinux we can read."""


Segment = namedtuple('Segment', 'vaddr paddr offset filesz memsz flags')
Section = namedtuple('Section', 'name type flags addr offset size link')


def _decompress_stream(decompressor, payload, name):
    """Run a zlib/lzma/bz2-style decompressor with a bounded output.

    The kernel build appends the decompressed size (4 bytes) after the compressed
    stream, so data left over after the end of stream is expected and ignored.
    """
    try:
        out = decompressor.decompress(payload, MAX_VMLINUX_SIZE + 1)
    except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as exc:
        raise KernelImageError('%s payload is corrupt: %s' % (name, exc)) from None
    if len(out) > MAX_VMLINUX_SIZE:
        raise KernelImageError('%s payload decompresses to more than %d MiB'
                               % (name, MAX_VMLINUX_SIZE >> 20))
    if not decompressor.eof:
        raise KernelImageError('%s payload is truncated' % name)
    return out


def _decompress_zstd(payload):
    """Decompress a zstd payload with the optional ``zstandard`` module.

    Its decompressor cannot bound its output, so the input goes in by the KiB: one KiB
    of zstd expands to at most 32 MiB (RLE blocks), which bounds the overshoot.
    """
    try:
        import zstandard
    except ImportError:
        raise KernelImageError(
            'the kernel payload is zstd-compressed; install the optional "zstandard" '
            'module to read it') from None
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    out = bytearray()
    try:
        for pos in range(0, len(payload), 1024):
            out += decompressor.decompress(payload[pos:pos + 1024])
            if len(out) > MAX_VMLINUX_SIZE:
                raise KernelImageError('zstd payload decompresses to more than %d MiB'
                                       % (MAX_VMLINUX_SIZE >> 20))
            if decompressor.eof:
                return bytes(out)
    except zstandard.ZstdError as exc:
        raise KernelImageError('zstd payload is corrupt: %s' % exc) from None
    raise KernelImageError('zstd payload is truncated')


_LZ4_LEGACY_MAGIC = b'\x02\x21\x4c\x18'
_LZ4_LEGACY_BLOCK = 8 << 20


def _decompress_lz4(payload):
    """Decompress the lz4 *legacy* frame the kernel build writes (``lz4 -l``).

    The legacy frame is the magic followed by blocks of ``u32 compressed size`` + data,
    each decompressing to at most 8 MiB; it ends at the first size that is not a block
    (the kernel appends the decompressed size, which ends it here).
    """
    try:
        import lz4.block
    except ImportError:
        raise KernelImageError(
            'the kernel payload is lz4-compressed; install the optional "lz4" module '
            'to read it') from None
    out = bytearray()
    pos = len(_LZ4_LEGACY_MAGIC)
    while pos + 4 <= len(payload):
        size, = struct.unpack_from('<I', payload, pos)
        if size == 0 or pos + 4 + size > len(payload):
            break
        try:
            out += lz4.block.decompress(payload[pos + 4:pos + 4 + size],
                                        uncompressed_size=_LZ4_LEGACY_BLOCK)
        except lz4.block.LZ4BlockError as exc:
            raise KernelImageError('lz4 payload is corrupt: %s' % exc) from None
        if len(out) > MAX_VMLINUX_SIZE:
            raise KernelImageError('lz4 payload decompresses to more than %d MiB'
                                   % (MAX_VMLINUX_SIZE >> 20))
        pos += 4 + size
    if not out:
        raise KernelImageError('lz4 payload holds no block')
    return bytes(out)


def _decompress(payload):
    """Pick the decompressor by the payload's magic, as the kernel's boot code does."""
    if payload.startswith(b'\xfd7zXZ\x00'):
        return _decompress_stream(lzma.LZMADecompressor(lzma.FORMAT_XZ), payload, 'xz')
    if payload.startswith(b'\x5d\x00\x00'):
        return _decompress_stream(lzma.LZMADecompressor(lzma.FORMAT_ALONE), payload, 'lzma')
    if payload.startswith(b'\x1f\x8b'):
        return _decompress_stream(zlib.decompressobj(16 + zlib.MAX_WBITS), payload, 'gzip')
    if payload.startswith(b'BZh'):
        return _decompress_stream(bz2.BZ2Decompressor(), payload, 'bzip2')
    if payload.startswith(b'\x28\xb5\x2f\xfd'):
        return _decompress_zstd(payload)
    if payload.startswith(_LZ4_LEGACY_MAGIC):
        return _decompress_lz4(payload)
    if payload.startswith(b'\x89LZO'):
        raise KernelImageError('the kernel payload is lzo-compressed, which is not supported')
    raise KernelImageError('unknown kernel payload compression (magic %s)'
                           % bytes(payload[:6]).hex())


def unpack_vmlinuz(data):
    """Return the vmlinux ELF inside a bzImage (or ``data`` itself if it already is ELF).

    The payload is located through the setup header (boot protocol 2.08+: ``payload_offset``
    and ``payload_length`` count from the start of the protected-mode code, which follows
    the ``setup_sects`` 512-byte setup sectors and the boot sector).
    """
    data = bytes(data)
    if data.startswith(ELF_MAGIC):
        return data
    if len(data) < _PAYLOAD_OFFSET + 8 or data[_HDRS_OFFSET:_HDRS_OFFSET + 4] != b'HdrS':
        raise KernelImageError('not a bzImage (no "HdrS" setup header) and not an ELF file')
    version, = struct.unpack_from('<H', data, _VERSION_OFFSET)
    if version < _MIN_PAYLOAD_PROTOCOL:
        raise KernelImageError('boot protocol %d.%02d has no payload pointer (need 2.08+)'
                               % (version >> 8, version & 0xff))
    setup_sects = data[_SETUP_SECTS] or 4       # 0 means 4, for very old boot loaders
    payload_offset, payload_length = struct.unpack_from('<II', data, _PAYLOAD_OFFSET)
    start = (setup_sects + 1) * 512 + payload_offset
    if payload_length == 0 or start + payload_length > len(data):
        raise KernelImageError('bzImage payload (%d bytes at %d) lies outside the %d-byte file'
                               % (payload_length, start, len(data)))
    vmlinux = _decompress(data[start:start + payload_length])
    if not vmlinux.startswith(ELF_MAGIC):
        raise KernelImageError('the decompressed payload is not an ELF file')
    return vmlinux


def _cstring(data, offset, limit=4096):
    """NUL-terminated string at ``offset``; bounded so a missing NUL cannot run away."""
    if not 0 <= offset < len(data):
        raise KernelImageError('string offset %d outside its table' % offset)
    end = data.find(b'\0', offset, offset + limit)
    if end < 0:
        raise KernelImageError('unterminated string at offset %d' % offset)
    return bytes(data[offset:end]).decode('utf-8', 'replace')


class ElfImage:
    """Read-only view of a 64-bit little-endian vmlinux ELF."""

    def __init__(self, data):
        self.data = bytes(data)
        if len(self.data) < _EHDR.size or not self.data.startswith(ELF_MAGIC):
            raise KernelImageError('not an ELF file')
        ident = self.data[:16]
        if ident[4] != 2 or ident[5] != 1:
            raise KernelImageError('only 64-bit little-endian ELF kernels are supported')
        (_, _, self.machine, _, self.entry, phoff, shoff, _, _, phentsize, phnum,
         shentsize, shnum, shstrndx) = _EHDR.unpack_from(self.data)
        self.segments = self._read_segments(phoff, phentsize, phnum)
        self.sections = self._read_sections(shoff, shentsize, shnum, shstrndx)

    def _table(self, offset, entsize, count, struct_, what):
        """Unpack ``count`` entries of a header table after checking it is in the file."""
        if count and (entsize < struct_.size or offset + entsize * count > len(self.data)):
            raise KernelImageError('%s table (%d x %d bytes at %d) is outside the file'
                                   % (what, count, entsize, offset))
        return [struct_.unpack_from(self.data, offset + i * entsize) for i in range(count)]

    def _read_segments(self, phoff, phentsize, phnum):
        """PT_LOAD segments, and the (offset, size) of PT_NOTE ones for the build-id."""
        segments, self._notes = [], []
        for p_type, p_flags, off, vaddr, paddr, filesz, memsz, _ in self._table(
                phoff, phentsize, phnum, _PHDR, 'program header'):
            if p_type == _PT_NOTE:
                self._notes.append((off, filesz))
            elif p_type == _PT_LOAD:
                if off + filesz > len(self.data) or filesz > memsz:
                    raise KernelImageError('PT_LOAD at 0x%x has its data outside the file'
                                           % vaddr)
                segments.append(Segment(vaddr, paddr, off, filesz, memsz, p_flags))
        return segments

    def _read_sections(self, shoff, shentsize, shnum, shstrndx):
        """Section headers in file order (``_section_list``) and by name (first wins)."""
        raw = self._table(shoff, shentsize, shnum, _SHDR, 'section header')
        self._section_list = []
        if not raw:
            return {}
        if shstrndx >= len(raw):
            raise KernelImageError('section name table index %d out of range' % shstrndx)
        strtab = self._section_bytes(raw[shstrndx][4], raw[shstrndx][1], raw[shstrndx][5])
        for name_off, sh_type, flags, addr, offset, size, link, _, _, _ in raw:
            if sh_type != _SHT_NOBITS and offset + size > len(self.data):
                raise KernelImageError('section at offset %d is outside the file' % offset)
            name = _cstring(strtab, name_off) if name_off else ''
            self._section_list.append(Section(name, sh_type, flags, addr, offset, size, link))
        sections = {}
        for sec in self._section_list:
            sections.setdefault(sec.name, sec)
        return sections

    def _section_bytes(self, offset, sh_type, size):
        if sh_type == _SHT_NOBITS:
            return b''
        if offset + size > len(self.data):
            raise KernelImageError('section at offset %d is outside the file' % offset)
        return self.data[offset:offset + size]

    def section(self, name):
        """Contents of the section called ``name`` (empty if NOBITS), or None if absent."""
        sec = self.sections.get(name)
        return None if sec is None else self._section_bytes(sec.offset, sec.type, sec.size)

    def read(self, vaddr, size):
        """Bytes at a link-time virtual address, from the PT_LOAD segment holding them.

        Memory past a segment's file size (bss) reads as zeros, as it does after load.
        """
        for seg in self.segments:
            if seg.vaddr <= vaddr and 0 <= size and vaddr + size <= seg.vaddr + seg.memsz:
                start = vaddr - seg.vaddr
                chunk = self.data[seg.offset + start:seg.offset + min(start + size, seg.filesz)]
                return chunk + bytes(size - len(chunk))
        raise KernelImageError('0x%x+%d is not inside one loadable segment' % (vaddr, size))

    @functools.cached_property
    def build_id(self):
        """The GNU build-id as a hex string, or None if the kernel was built without it.

        It names the exact build, which is what a cache of derived profiles is keyed on.
        """
        notes = list(self._notes)
        notes += [(s.offset, s.size) for s in self._section_list if s.type == _SHT_NOTE]
        for offset, size in notes:
            pos, end = offset, min(offset + size, len(self.data))
            while pos + _NHDR.size <= end:
                namesz, descsz, n_type = _NHDR.unpack_from(self.data, pos)
                name_at = pos + _NHDR.size
                desc_at = name_at + ((namesz + 3) & ~3)
                pos = desc_at + ((descsz + 3) & ~3)
                if pos > end:
                    break
                if n_type == _NT_GNU_BUILD_ID and self.data[name_at:name_at + namesz] == b'GNU\0':
                    return self.data[desc_at:desc_at + descsz].hex()
        return None

    def symbols(self):
        """The ELF symbol table as (address, type letter, name), or [] if stripped.

        The letter follows ``nm``'s convention (upper case for globals) closely enough to
        rank duplicates the way kallsyms types do: A absolute, T text, D data, R read-only,
        B bss, W/V weak function/object.  The vmlinux inside a bzImage is stripped, so this
        matters only for a debug vmlinux.
        """
        symtab = next((s for s in self._section_list if s.type == _SHT_SYMTAB), None)
        if symtab is None:
            return []
        if symtab.link >= len(self._section_list):
            raise KernelImageError('symbol table links to a missing string table')
        strsec = self._section_list[symtab.link]
        strtab = self._section_bytes(strsec.offset, strsec.type, strsec.size)
        data = self._section_bytes(symtab.offset, symtab.type, symtab.size)
        result = []
        for name_off, info, _, shndx, value, _ in _SYM.iter_unpack(
                data[:len(data) - len(data) % _SYM.size]):
            bind, sym_type = info >> 4, info & 0xf
            if not name_off or shndx == _SHN_UNDEF or sym_type in (_STT_SECTION, _STT_FILE):
                continue
            letter = self._type_letter(shndx, bind, sym_type)
            if letter is not None:
                result.append((value, letter, _cstring(strtab, name_off)))
        return result

    def _type_letter(self, shndx, bind, sym_type):
        if shndx == _SHN_ABS:
            letter = 'a'
        elif bind == _STB_WEAK:
            return 'V' if sym_type == _STT_OBJECT else 'W'
        elif shndx >= _SHN_LORESERVE or shndx >= len(self._section_list):
            return None
        else:
            sec = self._section_list[shndx]
            if not sec.flags & _SHF_ALLOC:
                return None
            if sec.flags & _SHF_EXECINSTR:
                letter = 't'
            elif sec.type == _SHT_NOBITS:
                letter = 'b'
            elif sec.flags & _SHF_WRITE:
                letter = 'd'
            else:
                letter = 'r'
        return letter if bind == _STB_LOCAL else letter.upper()

    def loaded_image(self):
        """The PT_LOAD segments laid out as the kernel sits in physical memory.

        Returns ``(image, base)``: ``image`` places each segment's file bytes at
        ``p_paddr - lowest p_paddr`` (bss and gaps are zero, the trailing bss is left out),
        and ``base`` is the link-time virtual address of ``image[0]``.  Physical rather
        than virtual placement matters on x86-64 SMP kernels before 6.15, whose per-cpu
        segment is linked at virtual address 0 yet loaded between .data and .init:
        offsets into this image are then offsets into guest memory from the kernel's
        physical load address, so the same code scans a file and a memory window.
        """
        if not self.segments:
            raise KernelImageError('the kernel image has no loadable segment')
        segs = sorted(self.segments, key=lambda s: s.paddr)
        low = segs[0].paddr
        span = max(s.paddr + s.filesz for s in segs) - low
        if span > MAX_LOADED_SPAN:
            raise KernelImageError('loadable segments span %d MiB' % (span >> 20))
        image = bytearray(span)
        end = 0
        for seg in segs:
            at = seg.paddr - low
            if at < end:
                raise KernelImageError('loadable segments overlap at physical 0x%x'
                                       % seg.paddr)
            image[at:at + seg.filesz] = self.data[seg.offset:seg.offset + seg.filesz]
            end = at + seg.memsz
        return bytes(image), segs[0].vaddr
