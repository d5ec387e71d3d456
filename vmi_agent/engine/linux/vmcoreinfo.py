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

"""The kernel's VMCOREINFO text: the cheapest way to learn where a kernel sits.

Kernels built with crash-dump support keep a page of ``KEY=value`` lines in RAM for kdump
(``kernel/crash_core.c``, ``arch/x86/kernel/machine_kexec_64.c``): ``OSRELEASE=``,
``BUILD-ID=``, ``KERNELOFFSET=`` (the KASLR shift), ``NUMBER(phys_base)=``,
``SYMBOL(init_top_pgt)=`` and more.  QEMU's ELF dumps may carry a copy as a note.

The text lives in guest memory, so the guest can forge it: callers use it as a hint and
check it against the page tables and the kernel image before trusting it.
"""

from vmi_agent.engine.errors import MemoryAccessError

#: VMCOREINFO_BYTES in the kernel: one page.
MAX_BYTES = 4096
_MARK = b'OSRELEASE='
#: Scan at most this many candidates: copies of the text (the note and the data page)
#: and whatever a guest plants to distract us.
MAX_CANDIDATES = 16


class VmcoreInfo:
    """Parsed VMCOREINFO text."""

    def __init__(self, fields, paddr=None):
        self.fields = fields
        self.paddr = paddr

    @classmethod
    def parse(cls, data, paddr=None):
        """Parse ``KEY=value`` lines up to the first NUL; None if no OSRELEASE."""
        data = bytes(data[:MAX_BYTES]).split(b'\0', 1)[0]
        fields = {}
        for line in data.split(b'\n'):
            key, sep, value = line.partition(b'=')
            if not sep or not key or len(key) > 128:
                continue
            try:
                fields[key.decode('ascii')] = value.decode('ascii')
            except UnicodeDecodeError:
                continue
        if 'OSRELEASE' not in fields:
            return None
        return cls(fields, paddr)

    def _hex(self, key):
        value = self.fields.get(key)
        if value is None:
            return None
        try:
            return int(value, 16)
        except ValueError:
            return None

    def _dec(self, key):
        value = self.fields.get(key)
        if value is None:
            return None
        try:
            return int(value, 10)
        except ValueError:
            return None

    @property
    def release(self):
        return self.fields['OSRELEASE']

    @property
    def build_id(self):
        value = self.fields.get('BUILD-ID')
        if value and all(c in '0123456789abcdef' for c in value.lower()):
            return value.lower()
        return None

    @property
    def kernel_offset(self):
        """The KASLR virtual shift (``KERNELOFFSET=``, hexadecimal)."""
        return self._hex('KERNELOFFSET')

    def symbol(self, name):
        return self._hex('SYMBOL(%s)' % name)

    def number(self, name):
        # phys_base is printed with %ld and may be negative in principle.
        return self._dec('NUMBER(%s)' % name)

    def size(self, name):
        return self._dec('SIZE(%s)' % name)

    def offset(self, name):
        return self._dec('OFFSET(%s)' % name)


def find(memory, hint=None):
    """Yield each plausible VMCOREINFO found in ``memory`` (an ELF note first).

    ``hint`` is where a previous scan of the same guest found it: checked first, so a
    re-attach skips the scan while the guest has not rebooted.
    """
    if hint is not None:
        try:
            info = VmcoreInfo.parse(memory.read(hint, MAX_BYTES), hint)
        except MemoryAccessError:
            info = None
        if info is not None and info.kernel_offset is not None:
            yield info
    note = getattr(memory, 'note', None)
    if note is not None:
        desc = note('VMCOREINFO')
        if desc:
            info = VmcoreInfo.parse(desc)
            if info is not None:
                yield info
    seen = 0
    for paddr in memory.find(_MARK):
        if seen >= MAX_CANDIDATES:
            return
        # The text starts with OSRELEASE= at the beginning of its buffer; a hit in
        # the middle of other text (a log line, a file in the page cache) is not it.
        if paddr % 4:
            continue
        seen += 1
        try:
            data = memory.read(paddr, min(MAX_BYTES, _room(memory, paddr)))
        except MemoryAccessError:
            continue
        info = VmcoreInfo.parse(data, paddr)
        if info is not None and info.kernel_offset is not None:
            yield info


def _room(memory, paddr):
    for start, end in memory.ranges():
        if start <= paddr < end:
            return end - paddr
    return 0
