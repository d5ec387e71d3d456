"""Guest-physical memory sources.

A source answers one question: what bytes are at this guest-physical address?  It knows
nothing of page tables or kernels.  :func:`open_memory` picks the source for a file.
"""

from vmi_agent.engine.memory.base import PhysicalMemory
from vmi_agent.engine.memory.elfcore import ElfCore
from vmi_agent.engine.memory.ramfile import RamFile
from vmi_agent.engine.errors import MemoryFormatError

FORMATS = ('auto', 'raw', 'elf')


def open_memory(path, fmt='auto', machine='q35'):
    """Open a memory image: a live shared RAM file, a raw dump or an ELF core.

    ``auto`` looks at the first bytes: an ELF header means a core file (QEMU's
    ``dump-guest-memory``), anything else is raw guest RAM laid out as ``machine`` lays
    it out (see :class:`RamFile`).
    """
    if fmt not in FORMATS:
        raise MemoryFormatError('unknown memory format %r (expected one of %s)'
                                % (fmt, ', '.join(FORMATS)))
    if fmt == 'auto':
        try:
            with open(path, 'rb') as f:
                magic = f.read(4)
        except OSError as exc:
            raise MemoryFormatError('cannot open %s: %s' % (path, exc.strerror)) from exc
        fmt = 'elf' if magic == b'\x7fELF' else 'raw'
    if fmt == 'elf':
        return ElfCore(path)
    return RamFile(path, machine=machine)


__all__ = ['PhysicalMemory', 'RamFile', 'ElfCore', 'open_memory', 'FORMATS']
