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

"""Do the page tables map the kernel image's sections onto the image itself?

``kernel_text`` compares the image's physical pages with a baseline.  A rootkit can
leave those pages alone and point the kernel's page tables at a modified copy: the CPU
then runs bytes that the comparison never saw.  So each leaf mapping of a section must
be the image's own physical pages; any other is a critical finding.
"""

import struct

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.probes.base import Finding
from vmi_agent.engine.probes.kernel_code import format_symbol, hexaddr

#: Ranges reported one by one per section; the rest are counted in one more finding.
MAX_FINDINGS = 64

_PRESENT, _LARGE = 0x1, 0x80
_FRAME_MASKS = {12: 0x000ffffffffff000, 21: 0x000fffffffe00000, 30: 0x000fffffc0000000}


def remapped_findings(kernel, region):
    """Critical findings where the page tables do not map ``region`` onto the image.

    ``region`` has ``name``, runtime ``start`` and ``end``, and ``phys``, where the
    image holds it.
    """
    bad = []
    for vaddr, size, paddr in leaf_mappings(kernel, region.start, region.end):
        expected = region.phys + (vaddr - region.start)
        if paddr != expected:
            bad.append((vaddr, size, expected, paddr))
    findings = []
    for vaddr, size, expected, paddr in bad[:MAX_FINDINGS]:
        found = kernel.symbol_at(vaddr)
        evidence = {'region': region.name, 'address': hexaddr(vaddr), 'size': size,
                    'symbol': format_symbol(found), 'expected_physical': hexaddr(expected),
                    'mapped_physical': None if paddr is None else hexaddr(paddr),
                    'reason': 'remapped'}
        findings.append(Finding(
            'kernel_text_modified', 'critical',
            'kernel %s at %s (%s, %d bytes) is %s, not the kernel image at %s' % (
                region.name, hexaddr(vaddr), format_symbol(found) or '?', size,
                'not mapped' if paddr is None else 'mapped to ' + hexaddr(paddr),
                hexaddr(expected)), evidence))
    if len(bad) > MAX_FINDINGS:
        findings.append(Finding('kernel_text_modified', 'critical',
                                '%d more kernel %s ranges are not mapped onto the kernel '
                                'image' % (len(bad) - MAX_FINDINGS, region.name),
                                {'region': region.name, 'ranges': len(bad) - MAX_FINDINGS,
                                 'reason': 'remapped'}))
    return findings


def leaf_mappings(kernel, start, end):
    """``(vaddr, size, paddr or None)`` leaf mappings covering ``[start, end)``.

    A range walk of the page tables: one read per table touched, so a section mapped
    with 2 MiB pages costs a few reads instead of a walk per 4 KiB page.  Entries that
    are not present, or tables outside guest RAM, give ``paddr`` None.
    """
    read = kernel.memory.read
    top = 39 if kernel.location.levels == 4 else 48

    def walk(table, shift, lo, hi):
        first, last = (lo >> shift) & 0x1ff, ((hi - 1) >> shift) & 0x1ff
        try:
            raw = read(table + first * 8, (last - first + 1) * 8)
        except VMIError:
            yield lo, hi - lo, None
            return
        entries = struct.unpack('<%dQ' % (last - first + 1), raw)
        addr = lo
        while addr < hi:
            step = min(hi, (addr | ((1 << shift) - 1)) + 1)
            entry = entries[((addr >> shift) & 0x1ff) - first]
            if not entry & _PRESENT:
                yield addr, step - addr, None
            elif shift == 12 or (entry & _LARGE and shift in (21, 30)):
                frame = entry & _FRAME_MASKS[shift]
                yield addr, step - addr, frame + (addr & ((1 << shift) - 1))
            else:
                yield from walk(entry & _FRAME_MASKS[12], shift - 9, addr, step)
            addr = step

    yield from walk(kernel.location.dtb & _FRAME_MASKS[12], top, start, end)
