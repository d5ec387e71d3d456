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

"""Tests for vmi_agent.engine.linux.kernel_image on synthetic bzImages and ELF files.

The builders here (:func:`make_elf`, :func:`make_bzimage`) are also used by the kallsyms
tests to wrap synthetic tables in a vmlinux.
"""

import bz2
import gzip
import lzma
import struct
import sys

import pytest

from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux import kernel_image
from vmi_agent.engine.linux.kernel_image import ElfImage, KernelImageError, unpack_vmlinuz

PAGE = 0x1000


def _note(name, n_type, desc):
    name += b'\0'
    return (struct.pack('<III', len(name), len(desc), n_type)
            + name.ljust((len(name) + 3) & ~3, b'\0') + desc.ljust((len(desc) + 3) & ~3, b'\0'))


def make_elf(segments, sections=(), symbols=(), build_id=None):
    """A minimal x86-64 ELF: PT_LOAD segments, section headers, optional symtab and note.

    ``segments``: (vaddr, paddr, data, memsz) tuples; ``sections``: (name, vaddr, size,
    flags, sh_type) tuples lying inside the segments; ``symbols``: (name, value, info,
    section name or 'ABS') tuples.
    """
    body = bytearray(PAGE)
    phdrs, placed = [], []
    for vaddr, paddr, data, memsz in segments:
        offset = len(body)
        body += data
        body += bytes(-len(body) % PAGE)
        phdrs.append(struct.pack('<IIQQQQQQ', 1, 7, offset, vaddr, paddr, len(data),
                                 memsz, PAGE))
        placed.append((vaddr, offset, memsz))
    shstr = bytearray(b'\0')
    shdrs = [bytes(64)]
    index = {}

    def add_section(name, sh_type, flags, addr, offset, size, link=0, entsize=0):
        index[name] = len(shdrs)
        shdrs.append(struct.pack('<IIQQQQIIQQ', len(shstr), sh_type, flags, addr, offset,
                                 size, link, 0, 1, entsize))
        shstr.extend(name.encode() + b'\0')

    for name, vaddr, size, flags, sh_type in sections:
        offset = next(off + vaddr - base for base, off, memsz in placed
                      if base <= vaddr < base + memsz)
        add_section(name, sh_type, flags, vaddr, offset, size)
    if build_id is not None:
        note = _note(b'Xen', 6, b'linux\0') + _note(b'GNU', 3, build_id)
        offset = len(body)
        body += note
        phdrs.append(struct.pack('<IIQQQQQQ', 4, 4, offset, 0, 0, len(note), len(note), 4))
        add_section('.notes', 7, 0, 0, offset, len(note))
    if symbols:
        strtab = bytearray(b'\0')
        symtab = bytearray(bytes(24))
        for name, value, info, where in symbols:
            shndx = 0xfff1 if where == 'ABS' else index[where]
            symtab += struct.pack('<IBBHQQ', len(strtab), info, 0, shndx, value, 0)
            strtab += name.encode() + b'\0'
        str_at = len(body)
        body += strtab
        add_section('.strtab', 3, 0, 0, str_at, len(strtab))
        sym_at = len(body)
        body += symtab
        add_section('.symtab', 2, 0, 0, sym_at, len(symtab), link=index['.strtab'],
                    entsize=24)
    add_section('.shstrtab', 3, 0, 0, len(body), len(shstr) + len(b'.shstrtab\0'))
    body += shstr
    body += bytes(-len(body) % 8)
    shoff = len(body)
    body += b''.join(shdrs)
    phoff = 64
    header = struct.pack('<16sHHIQQQIHHHHHH', b'\x7fELF\x02\x01\x01' + bytes(9), 2, 62, 1,
                         0xffffffff81000000, phoff, shoff, 0, 64, 56, len(phdrs), 64,
                         len(shdrs), len(shdrs) - 1)
    body[:64] = header
    body[phoff:phoff + 56 * len(phdrs)] = b''.join(phdrs)
    return bytes(body)


def make_bzimage(payload, setup_sects=3, version=0x020f, payload_offset=0x2c0):
    """A bzImage whose setup header points at ``payload`` (size appended like the build)."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1f1] = setup_sects
    setup[0x202:0x206] = b'HdrS'
    struct.pack_into('<H', setup, 0x206, version)
    struct.pack_into('<II', setup, 0x248, payload_offset, len(payload) + 4)
    code = b'\x90' * payload_offset
    return bytes(setup) + code + payload + b'\x00\x10\x00\x00' + b'\xcc' * 100


TEXT, RODATA, DATA = 0xffffffff81000000, 0xffffffff81200000, 0xffffffff81400000


def sample_elf(build_id=b'\x12\x34\x56\x78' * 5, symbols=True):
    """Text, rodata, a per-cpu segment linked at 0 but loaded in between, data + bss."""
    text = b'\xcc' * 0x300 + b'\xc3'
    rodata = b'Linux version 6.1.0-test\0' + bytes(range(256))
    percpu = b'\x11' * 0x40
    data = b'\x22' * 0x80
    segments = [
        (TEXT, 0x1000000, text, 0x1000),
        (RODATA, 0x1200000, rodata, 0x1000),
        (0, 0x1300000, percpu, 0x1000),
        (DATA, 0x1400000, data, 0x3000),       # 0x80 bytes of data, then bss
    ]
    sections = [
        ('.text', TEXT, len(text), 0x6, 1),
        ('.rodata', RODATA, len(rodata), 0x2, 1),
        ('.data..percpu', 0, len(percpu), 0x3, 1),
        ('.data', DATA, len(data), 0x3, 1),
        ('.bss', DATA + 0x1000, 0x2000, 0x3, 8),
    ]
    syms = [
        ('_text', TEXT, 0x10, '.text'),             # global notype
        ('startup_64', TEXT, 0x12, '.text'),        # global func
        ('local_helper', TEXT + 0x100, 0x02, '.text'),
        ('linux_banner', RODATA, 0x11, '.rodata'),
        ('cpu_number', 0x20, 0x11, '.data..percpu'),
        ('init_task', DATA, 0x11, '.data'),
        ('weak_fn', TEXT + 0x200, 0x22, '.text'),
        ('weak_obj', DATA + 8, 0x21, '.data'),
        ('idt_table', DATA + 0x1000, 0x11, '.bss'),
        ('some_abs', 0x1234, 0x10, 'ABS'),
        ('file.c', 0, 0x04, 'ABS'),                 # STT_FILE: skipped
    ] if symbols else ()
    return make_elf(segments, sections, syms, build_id)


class TestUnpackVmlinuz:
    ELF = sample_elf()

    @pytest.mark.parametrize('compress', [
        lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                                filters=[{'id': lzma.FILTER_X86},
                                         {'id': lzma.FILTER_LZMA2, 'preset': 6}]),
        lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
        lambda d: gzip.compress(d, mtime=0),
        bz2.compress,
    ], ids=['xz-bcj', 'lzma', 'gzip', 'bzip2'])
    def test_stdlib_compressions(self, compress):
        assert unpack_vmlinuz(make_bzimage(compress(self.ELF))) == self.ELF

    def test_elf_is_returned_as_is(self):
        assert unpack_vmlinuz(self.ELF) == self.ELF

    def test_setup_sects_zero_means_four(self):
        image = bytearray(make_bzimage(gzip.compress(self.ELF), setup_sects=4))
        image[0x1f1] = 0
        assert unpack_vmlinuz(bytes(image)) == self.ELF

    def test_zstd_when_available(self):
        zstandard = pytest.importorskip('zstandard')
        payload = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(self.ELF)
        assert unpack_vmlinuz(make_bzimage(payload)) == self.ELF
        with pytest.raises(KernelImageError, match='truncated|corrupt'):
            unpack_vmlinuz(make_bzimage(payload[:len(payload) // 2]))

    def test_lz4_legacy_when_available(self):
        block = pytest.importorskip('lz4.block')
        frame = b'\x02\x21\x4c\x18'
        for start in range(0, len(self.ELF), 8 << 20):
            chunk = block.compress(self.ELF[start:start + (8 << 20)], store_size=False)
            frame += struct.pack('<I', len(chunk)) + chunk
        assert unpack_vmlinuz(make_bzimage(frame)) == self.ELF

    @pytest.mark.parametrize('module, magic, word', [
        ('zstandard', b'\x28\xb5\x2f\xfd' + bytes(20), 'zstd'),
        ('lz4.block', b'\x02\x21\x4c\x18' + bytes(20), 'lz4'),
    ])
    def test_optional_compression_missing_module(self, monkeypatch, module, magic, word):
        monkeypatch.setitem(sys.modules, module, None)
        if module == 'lz4.block':
            monkeypatch.setitem(sys.modules, 'lz4', None)
        with pytest.raises(KernelImageError, match=word):
            unpack_vmlinuz(make_bzimage(magic))

    @pytest.mark.parametrize('data, message', [
        (b'MZ' + bytes(0x300), 'not a bzImage'),
        (b'', 'not a bzImage'),
        (make_bzimage(b'\x89LZO\0' + bytes(30)), 'lzo'),
        (make_bzimage(b'\x00\x01\x02\x03' + bytes(30)), 'unknown kernel payload'),
        (make_bzimage(gzip.compress(b'not an elf at all')), 'not an ELF'),
        (make_bzimage(lzma.compress(ELF)[:200]), 'truncated|corrupt'),
        (make_bzimage(b'\x1f\x8b' + bytes(40)), 'corrupt'),
        (make_bzimage(gzip.compress(ELF), version=0x0207), '2.07'),
    ], ids=['pe', 'empty', 'lzo', 'unknown', 'not-elf', 'truncated-xz', 'bad-gzip', 'old'])
    def test_bad_images(self, data, message):
        with pytest.raises(KernelImageError, match=message):
            unpack_vmlinuz(data)

    def test_payload_outside_file(self):
        image = bytearray(make_bzimage(gzip.compress(self.ELF)))
        struct.pack_into('<I', image, 0x24c, len(image))
        with pytest.raises(KernelImageError, match='outside'):
            unpack_vmlinuz(bytes(image))

    def test_decompression_is_bounded(self, monkeypatch):
        monkeypatch.setattr(kernel_image, 'MAX_VMLINUX_SIZE', 4096)
        bomb = gzip.compress(b'\x7fELF' + bytes(1 << 20))
        with pytest.raises(KernelImageError, match='more than'):
            unpack_vmlinuz(make_bzimage(bomb))

    def test_error_is_a_profile_error(self):
        assert issubclass(KernelImageError, ProfileError)


class TestElfImage:
    def test_sections_and_read(self):
        elf = ElfImage(sample_elf())
        assert elf.sections['.rodata'].addr == RODATA
        assert elf.section('.rodata').startswith(b'Linux version 6.1.0-test\0')
        assert elf.section('.bss') == b''
        assert elf.section('.foo') is None
        assert elf.read(RODATA + 6, 7) == b'version'
        assert elf.read(TEXT + 0x300, 1) == b'\xc3'
        assert elf.read(DATA + 0x7e, 4) == b'\x22\x22\0\0'      # data then bss zeros
        assert elf.read(DATA + 0x2ff0, 16) == bytes(16)
        with pytest.raises(KernelImageError):
            elf.read(DATA + 0x2ff0, 17)                          # past the segment
        with pytest.raises(KernelImageError):
            elf.read(0xffffffff90000000, 1)

    def test_build_id(self):
        assert ElfImage(sample_elf()).build_id == '12345678' * 5
        assert ElfImage(sample_elf(build_id=None)).build_id is None

    def test_symbols(self):
        syms = {name: (addr, kind) for addr, kind, name in ElfImage(sample_elf()).symbols()}
        assert syms == {
            '_text': (TEXT, 'T'), 'startup_64': (TEXT, 'T'),
            'local_helper': (TEXT + 0x100, 't'), 'linux_banner': (RODATA, 'R'),
            'cpu_number': (0x20, 'D'), 'init_task': (DATA, 'D'),
            'weak_fn': (TEXT + 0x200, 'W'), 'weak_obj': (DATA + 8, 'V'),
            'idt_table': (DATA + 0x1000, 'B'), 'some_abs': (0x1234, 'A'),
        }
        assert ElfImage(sample_elf(symbols=False)).symbols() == []

    def test_loaded_image_uses_physical_layout(self):
        elf = ElfImage(sample_elf())
        image, base = elf.loaded_image()
        assert base == TEXT
        assert image[0x300] == 0xc3
        assert image[0x200000:0x200005] == b'Linux'
        assert image[0x300000:0x300040] == b'\x11' * 0x40      # per-cpu at its paddr
        assert image[0x400000:0x400080] == b'\x22' * 0x80
        assert len(image) == 0x400080                           # trailing bss left out

    def test_loaded_image_rejects_overlap(self):
        elf = ElfImage(make_elf([(TEXT, 0x1000000, b'a' * 16, 0x2000),
                                 (DATA, 0x1001000, b'b' * 16, 0x1000)]))
        with pytest.raises(KernelImageError, match='overlap'):
            elf.loaded_image()

    @pytest.mark.parametrize('mutate, message', [
        (lambda b: b[:40], 'not an ELF'),
        (lambda b: b[:4] + b'\x01' + b[5:], '64-bit'),
        (lambda b: b[:32] + struct.pack('<Q', len(b)) + b[40:], 'program header'),
        (lambda b: b[:40] + struct.pack('<Q', len(b) - 10) + b[48:], 'section header'),
    ], ids=['short', 'elf32', 'phdrs-outside', 'shdrs-outside'])
    def test_malformed(self, mutate, message):
        with pytest.raises(KernelImageError, match=message):
            ElfImage(mutate(sample_elf()))

    def test_segment_data_outside_file(self):
        data = bytearray(sample_elf())
        struct.pack_into('<Q', data, 64 + 8, len(data))             # first p_offset
        with pytest.raises(KernelImageError, match='outside the file'):
            ElfImage(bytes(data))
