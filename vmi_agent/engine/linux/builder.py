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

"""Making a :class:`Profile` for a kernel build nobody has profiled yet.

Two sources, one result:

* ``from_image``: the distribution's vmlinuz (or a vmlinux).  BTF comes from its ``.BTF``
  section; symbols from an operator's System.map or kallsyms file when given, else from
  the ELF symbol table, else from the kallsyms tables inside the image.
* ``from_memory``: nothing but guest memory.  The running kernel keeps its kallsyms
  tables and its BTF in RAM; we find the image through VMCOREINFO or the banner, decode
  kallsyms there (runtime addresses), and read BTF between ``__start_BTF`` and
  ``__stop_BTF``.  This is what lets the engine introspect a kernel with no profile
  files at all.
"""

import re

from vmi_agent.engine.errors import MemoryAccessError, ProfileError, TranslationError
from vmi_agent.engine.linux import kallsyms, kernel_image
from vmi_agent.engine.linux.locate import START_KERNEL_MAP, KASLR_ALIGN
from vmi_agent.engine.linux.profile import Profile
from vmi_agent.engine.linux.symbols import (SymbolTable, parse_kallsyms,
                                            parse_system_map)
from vmi_agent.engine.paging import AddressSpace

#: Link-time ``_text`` of x86-64 kernels (CONFIG_PHYSICAL_START = 16 MiB), used only
#: when no VMCOREINFO says what the KASLR shift is.
DEFAULT_TEXT = START_KERNEL_MAP + 0x1000000
BANNER_MAX = 512
#: How much physical memory around the kernel to search for its kallsyms tables.
IMAGE_WINDOW = 128 << 20
MAX_BTF = 64 << 20
_RELEASE = re.compile(r'Linux version (\S+)')


def _release(banner):
    match = _RELEASE.match(banner)
    if not match:
        raise ProfileError('not a Linux banner: %r' % banner[:80])
    return match.group(1)


def _cstring(data):
    return bytes(data).split(b'\0', 1)[0].decode('latin-1')


def read_symbol_file(system_map=None, kallsyms_file=None):
    """Symbols from an operator's System.map or /proc/kallsyms copy, or None."""
    for path, parse in ((system_map, parse_system_map), (kallsyms_file, parse_kallsyms)):
        if path:
            try:
                with open(path, encoding='latin-1') as f:
                    return parse(f.read())
            except OSError as exc:
                raise ProfileError('cannot read %s: %s' % (path, exc.strerror)) from exc
    return None


def from_image(path, needs=((), (), ()), system_map=None, kallsyms_file=None):
    """A profile from a vmlinuz/vmlinux file (plus optional symbol files).

    ``needs`` is ``(structs, enums, symbols)`` to resolve ahead (see ``precompute``).
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise ProfileError('cannot read kernel image %s: %s' % (path, exc.strerror)) \
            from exc
    image = kernel_image.ElfImage(kernel_image.unpack_vmlinuz(data))
    btf = image.section('.BTF')
    if btf is None:
        raise ProfileError('%s has no .BTF section (a kernel built without '
                           'CONFIG_DEBUG_INFO_BTF needs a profile supplied)' % path)
    entries = read_symbol_file(system_map, kallsyms_file)
    if entries is None:
        entries = image.symbols() or kallsyms.find_kallsyms_in_elf(image)
    symbols = SymbolTable(entries)
    banner = _cstring(image.read(symbols.address('linux_banner'), BANNER_MAX))
    profile = Profile(_release(banner), banner, image.build_id, symbols, {}, {},
                      btf_bytes=bytes(btf))
    profile.precompute(*needs)
    return profile


def from_memory(memory, vmcoreinfos, needs=((), (), ())):
    """A profile from guest memory alone (see the module docstring)."""
    for phys_text, runtime, info in _images_in_memory(memory, vmcoreinfos):
        try:
            return _profile_at(memory, phys_text, runtime, info, needs)
        except (ProfileError, MemoryAccessError, TranslationError):
            continue
    raise ProfileError('no Linux kernel found in this memory image (no VMCOREINFO, no '
                       'banner with kallsyms near it)')


def _images_in_memory(memory, vmcoreinfos):
    """Yield ``(phys_text, runtime_symbols, vmcoreinfo-or-None)`` candidates."""
    windows = set()
    for info in vmcoreinfos:
        shift, phys_base = info.kernel_offset, info.number('phys_base')
        if shift is None or phys_base is None:
            continue
        guess = DEFAULT_TEXT + shift - START_KERNEL_MAP + phys_base
        for phys_text, symbols in _kallsyms_near(memory, guess, windows):
            yield phys_text, symbols, info
    for hit in memory.find(b'Linux version '):
        if len(windows) > 8:
            break
        start = hit - hit % KASLR_ALIGN - IMAGE_WINDOW // 2
        for phys_text, symbols in _kallsyms_near(memory, start, windows):
            yield phys_text, symbols, None


def _kallsyms_near(memory, phys_guess, windows):
    """Decode kallsyms in a window from ``phys_guess``; yield ``(phys_text, symbols)``.

    The banner is in the image at its symbol's distance from ``_text``; other copies
    of the text (the printk buffer) give unaligned or unmapped candidates that the
    caller's page-table check throws out.
    """
    start = max(0, phys_guess - phys_guess % KASLR_ALIGN)
    for rstart, rend in memory.ranges():
        if rstart <= start < rend:
            break
    else:
        return
    size = min(IMAGE_WINDOW, rend - start)
    if any(w[0] <= start and start + size <= w[1] for w in windows):
        return
    windows.add((start, start + size))
    try:
        entries = kallsyms.find_kallsyms(memory.view(start, size))
    except ProfileError:
        return
    symbols = SymbolTable(entries)
    banner, text = symbols.get('linux_banner'), symbols.get('_text')
    if banner is None or text is None:
        return
    for hit in memory.find(b'Linux version ', start, start + size):
        phys_text = hit - (banner - text)
        if phys_text % KASLR_ALIGN == 0:
            yield phys_text, symbols


def _profile_at(memory, phys_text, symbols, info, needs):
    text = symbols.address('_text')

    def read(vaddr, size):
        return memory.read(phys_text + vaddr - text, size)

    # The page tables must agree, or this is a forged or stale copy.
    dtb = phys_text + symbols.address('init_top_pgt') - text
    if not any(_maps(memory, dtb, levels, text, phys_text) for levels in (4, 5)):
        raise ProfileError('kernel image at 0x%x is not mapped by its page tables'
                           % phys_text)
    banner = _cstring(read(symbols.address('linux_banner'), BANNER_MAX))
    start, stop = symbols.address('__start_BTF'), symbols.address('__stop_BTF')
    if not 0 < stop - start <= MAX_BTF:
        raise ProfileError('implausible BTF bounds in guest memory')
    btf = read(start, stop - start)
    shift = info.kernel_offset if info is not None else text - DEFAULT_TEXT
    build_id = info.build_id if info is not None else None
    profile = Profile(_release(banner), banner, build_id, symbols.shift(-shift), {}, {},
                      btf_bytes=bytes(btf))
    profile.precompute(*needs)
    return profile


def _maps(memory, dtb, levels, text, phys_text):
    try:
        return AddressSpace(memory, dtb, levels).translate(text) == phys_text
    except TranslationError:
        return False
