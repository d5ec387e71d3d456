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

"""Where a code pointer lands: a function of the kernel, a module, or somewhere else.

The hook probes (``syscalls``, ``idt``, ``kernel_text``) all ask the same two questions
of an address read from the guest: is it the start of a function kallsyms knows in the
kernel's text, and if not, whose memory is it in.  :class:`KernelCode` answers the first
from the profile (no guest data involved); :class:`ModuleMap` answers the second from the
guest's ``modules`` list, read fresh for every run because modules come and go.

Module memory is read from ``struct module`` as the kernel's own types describe it:
``core_layout``/``init_layout`` (``base``, ``size``, ``text_size``) up to Linux 6.3,
``mem[MOD_MEM_NUM_TYPES]`` (``base``, ``size``, one range per ``enum mod_mem_type``)
from 6.4.  Kernels before 4.5 (``module_core``/``core_size``) are not covered: their
module pointers are reported as "outside kernel text" without a module name.
"""

from vmi_agent.engine.errors import ProfileError, VMIError
from vmi_agent.engine.probes.modules import ModuleFields, module_list


def hexaddr(value):
    """An address as evidence wants it: a hex string."""
    return '0x%x' % value


class KernelCode:
    """The kernel image's code ranges at their runtime addresses (memoised per kernel)."""

    def __init__(self, kernel):
        self.text = (kernel.symbol('_stext'), kernel.symbol('_etext'))
        if not self.text[0] < self.text[1]:
            raise ProfileError('_stext is not below _etext')
        self.image = (_optional(kernel, '_text', self.text[0]),
                      _optional(kernel, '_end', self.text[1]))
        start = _optional(kernel, '__entry_text_start')
        end = _optional(kernel, '__entry_text_end')
        self.entry = (start, end) if start and end and start < end else None

    def in_text(self, addr):
        return self.text[0] <= addr < self.text[1]

    def in_image(self, addr):
        return self.image[0] <= addr < self.image[1]

    def in_entry_text(self, addr):
        """True in ``.entry.text``; None when this kernel does not mark it."""
        if self.entry is None:
            return None
        return self.entry[0] <= addr < self.entry[1]

    def symbol(self, kernel, addr):
        """``(name, offset)`` for an address inside the kernel image, else None.

        Outside the image the nearest kallsyms symbol below would be meaningless (a
        module address would resolve to the image's last symbol plus gigabytes).
        """
        if not self.in_image(addr):
            return None
        return kernel.symbol_at(addr)

    def function_at(self, kernel, addr):
        """The name of the kernel-text function that starts exactly at ``addr``, or None."""
        if not self.in_text(addr):
            return None
        found = kernel.symbol_at(addr)
        if found is None or found[1] != 0:
            return None
        return found[0]


def format_symbol(found):
    """``name`` or ``name+0x1f`` for a ``(name, offset)`` pair; None stays None."""
    if found is None:
        return None
    name, offset = found
    return name if offset == 0 else '%s+0x%x' % (name, offset)


def _optional(kernel, name, default=None):
    link = kernel.profile.get_address(name)
    return default if link is None else link + kernel.location.shift


class ModuleMemoryFields:
    """Where ``struct module`` keeps its memory ranges, for this kernel's layout.

    ``ranges`` is a list of ``(label, base offset, size offset, text-size offset or
    None)``: a label names the region ("text", "core", "init_text", ...).
    """

    def __init__(self, kernel):
        module = kernel.struct('module')
        self.ranges = []
        if module.has('mem'):
            mem = module.member('mem')
            inner = kernel.struct(mem['elem_type'])
            base, size = inner.offset('base'), inner.offset('size')
            labels = _mod_mem_labels(kernel)
            for i in range(min(mem['count'], 16)):
                at = mem['offset'] + i * mem['elem_size']
                self.ranges.append((labels.get(i, 'mem%d' % i), at + base, at + size, None))
        elif module.has('core_layout.base'):
            for part in ('core', 'init'):
                layout = part + '_layout'
                text = ('%s.text_size' % layout if module.has('%s.text_size' % layout)
                        else None)
                self.ranges.append((part, module.offset(layout + '.base'),
                                    module.offset(layout + '.size'),
                                    module.offset(text) if text else None))
        else:
            raise ProfileError('struct module has neither mem[] nor core_layout '
                               '(a kernel before 4.5?)')


def _mod_mem_labels(kernel):
    try:
        values = kernel.profile.enum('mod_mem_type')
    except ProfileError:
        return {0: 'text'}
    return {v: k.replace('MOD_', '').lower() for k, v in values.items()
            if not k.endswith('NUM_TYPES')}


class ModuleMap:
    """Memory ranges of the loaded modules, read from the guest on first use.

    One per probe run.  The module list is guest data: if it is corrupt the ranges
    read before the damage are kept and :attr:`error` says what went wrong, so that a
    hook finding still carries what could be learnt rather than failing the probe.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self.error = None
        self._ranges = None

    def ranges(self):
        """``[(start, end, module name, region label)]``, text regions first."""
        if self._ranges is None:
            self._ranges = []
            try:
                self._read()
            except VMIError as exc:
                self.error = '%s: %s' % (type(exc).__name__, exc)
        return self._ranges

    def _read(self):
        kernel = self.kernel
        fields = kernel.memo(ModuleFields)
        layout = kernel.memo(ModuleMemoryFields)
        for module, (name, _, _) in module_list(kernel, fields):
            for label, base_off, size_off, text_off in layout.ranges:
                base = kernel.u64(module + base_off)
                size = kernel.u32(module + size_off)
                if not base or not size:
                    continue
                if text_off is not None:
                    text = min(kernel.u32(module + text_off), size)
                    if text:
                        self._ranges.append((base, base + text, name, label + '_text'))
                self._ranges.append((base, base + size, name, label))

    def find(self, addr):
        """``(module name, region label)`` of the module memory holding ``addr``.

        A text range comes before the whole range it is part of, so the first match is
        the most precise one.
        """
        for start, end, name, label in self.ranges():
            if start <= addr < end:
                return name, label
        return None


def describe(kernel, code, modules, addr):
    """Evidence for a code pointer: address, symbol, and where it lands."""
    found = code.symbol(kernel, addr)
    evidence = {'address': hexaddr(addr), 'symbol': format_symbol(found)}
    if code.in_text(addr):
        evidence['region'] = 'kernel text'
        return evidence
    owner = modules.find(addr)
    if owner is not None:
        evidence['region'] = 'module'
        evidence['module'], evidence['module_region'] = owner
    elif code.in_image(addr):
        evidence['region'] = 'kernel image outside text'
    else:
        evidence['region'] = 'outside kernel and modules'
    if modules.error:
        evidence['module_list_error'] = modules.error
    return evidence


def off_text_severity(evidence):
    """Severity of a code pointer that is not a kernel function start.

    Into a module or outside the kernel's text altogether: critical (that is where a
    rootkit's own code lives).  Inside kernel text but not at a function start: high
    (a gadget or a mid-function jump, still not what the kernel put there).
    """
    return 'high' if evidence['region'] == 'kernel text' else 'critical'
