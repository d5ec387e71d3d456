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

"""Where a known kernel build sits in one guest's memory (KASLR, both halves).

x86-64 KASLR moves the kernel twice, independently: its physical load address and its
virtual address.  Given a :class:`Profile` (link-time symbols and the banner), this
module finds both, then the page-table root and the (also randomised) direct map:

1. physical: the kernel image is contiguous, so ``linux_banner`` sits at a fixed distance
   from ``_text``: try every ``CONFIG_PHYSICAL_ALIGN`` (2 MiB) slot, then VMCOREINFO's
   answer, then a full scan for the banner text;
2. virtual: with ``init_top_pgt`` found physically, the page tables must map
   ``_text + shift`` to the physical ``_text``; every 2 MiB candidate shift in the
   kernel's 1 GiB window is tried (a few milliseconds).

Nothing here trusts guest-written hints: a banner copy at the wrong place fails the page
table check, and VMCOREINFO is only a further place to look.
"""

from vmi_agent.engine.errors import MemoryAccessError, ProfileError, TranslationError
from vmi_agent.engine.paging import AddressSpace, is_canonical

START_KERNEL_MAP = 0xffffffff80000000
#: The smallest CONFIG_PHYSICAL_ALIGN on x86-64; KASLR slots are multiples of it.
KASLR_ALIGN = 0x200000
#: KERNEL_IMAGE_SIZE: the kernel's virtual window is 1 GiB above __START_KERNEL_map.
KERNEL_WINDOW = 1 << 30
DEFAULT_PAGE_OFFSET = {4: 0xffff888000000000, 5: 0xff11000000000000}
#: Compare this much of the banner: enough to tell builds apart, cheap to read.
BANNER_PROBE = 160


class KernelLocation:
    """A kernel build's placement in one guest."""

    def __init__(self, phys_text, shift, dtb, levels, page_offset_base, text_link):
        self.phys_text = phys_text
        self.shift = shift
        self.dtb = dtb
        self.levels = levels
        self.page_offset_base = page_offset_base
        self.text_link = text_link

    def phys_of_link(self, link_vaddr):
        """Physical address of a kernel-image symbol given at its link-time address."""
        return self.phys_text + (link_vaddr - self.text_link)

    def __repr__(self):
        return ('<KernelLocation phys_text=0x%x shift=0x%x dtb=0x%x levels=%d>'
                % (self.phys_text, self.shift, self.dtb, self.levels))


def locate(memory, profile, vmcoreinfos=()):
    """Find ``profile``'s kernel in ``memory``; raise ProfileError if it is not there.

    ``vmcoreinfos`` is consumed only when the cheap search fails, so callers may pass a
    lazy scan.
    """
    text = profile.address('_text')
    banner_off = profile.address('linux_banner') - text
    pgt_off = profile.address('init_top_pgt') - text
    banner = profile.banner.encode('latin-1')[:BANNER_PROBE]
    infos = (i for i in vmcoreinfos if i.release == profile.release)

    for phys_text in _physical_candidates(memory, text, banner_off, banner, infos):
        dtb = phys_text + pgt_off
        for levels in (4, 5):
            space = AddressSpace(memory, dtb, levels)
            shift = _virtual_shift(space, text, phys_text, banner_off)
            if shift is None:
                continue
            pob = _page_offset_base(memory, space, profile, text, phys_text, levels)
            return KernelLocation(phys_text, shift, dtb, levels, pob, text)
    raise ProfileError('kernel %s is not in this memory image (banner not found, or '
                       'its page tables do not map it)' % profile.release)


def _physical_candidates(memory, text, banner_off, banner, infos):
    """Yield physical addresses of ``_text`` whose banner matches, cheapest first."""
    seen = set()

    def matches(phys_text):
        if phys_text in seen or phys_text < 0:
            return False
        seen.add(phys_text)
        try:
            return memory.read(phys_text + banner_off, len(banner)) == banner
        except MemoryAccessError:
            return False

    for start, end in memory.ranges():
        slot = -(-start // KASLR_ALIGN) * KASLR_ALIGN
        for phys_text in range(slot, end, KASLR_ALIGN):
            if matches(phys_text):
                yield phys_text
    for info in infos:
        if info.kernel_offset is None or info.number('phys_base') is None:
            continue
        guess = text + info.kernel_offset - START_KERNEL_MAP + info.number('phys_base')
        if matches(guess):
            yield guess
    for hit in memory.find(banner):
        if matches(hit - banner_off):
            yield hit - banner_off


def _virtual_shift(space, text, phys_text, banner_off):
    """The KASLR shift that makes the page tables map ``_text`` where it is."""
    low = START_KERNEL_MAP - (text & ~(KASLR_ALIGN - 1))
    for shift in range(low, low + KERNEL_WINDOW, KASLR_ALIGN):
        try:
            if (space.translate(text + shift) == phys_text
                    and space.translate(text + shift + banner_off)
                    == phys_text + banner_off):
                return shift
        except TranslationError:
            continue
    return None


def _page_offset_base(memory, space, profile, text, phys_text, levels):
    """The direct map's base: ``page_offset_base`` when KASLR moves it, else the default."""
    link = profile.get_address('page_offset_base')
    if link is not None:
        try:
            value = int.from_bytes(memory.read(phys_text + link - text, 8), 'little')
        except MemoryAccessError:
            value = None
        if value and is_canonical(value, levels) and value % (1 << 30) == 0:
            try:
                if space.translate(value + phys_text) == phys_text:
                    return value
            except TranslationError:
                pass
    value = DEFAULT_PAGE_OFFSET[levels]
    try:
        if space.translate(value + phys_text) == phys_text:
            return value
    except TranslationError:
        pass
    raise ProfileError('cannot find the direct map (page_offset_base) of this kernel')
