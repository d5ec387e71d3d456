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

"""The kernel's own patching of its text, recognised site by site.

A running kernel rewrites its own code (alternatives, paravirt and retpoline patching
happen during boot, before any baseline): ``kernel_text`` must not report these changes
as tampering, nor let a rootkit hide behind them.  So a change is only the kernel's
own when it is at the exact kind of site the kernel patches, and both the baseline
bytes and the current bytes are an encoding the kernel writes there:

- jump labels (static keys): the sites of ``__start___jump_table``..
  ``__stop___jump_table`` (``struct jump_entry``: relative ``code``/``target``/``key``
  since 5.0, absolute before; the layout is read from BTF).  A 5-byte site holds a
  5-byte NOP or ``jmp rel32`` to the entry's own target; a 2-byte site a 2-byte NOP or
  ``jmp rel8`` to its target;
- static calls: the sites of ``__start_static_call_sites``..``__stop_static_call_sites``
  and the ``__SCT__*`` trampolines: NOP, ``ret``, the 5-byte ``xor %eax,%eax`` of
  ``__static_call_return0``, or ``call``/``jmp rel32`` to a kernel function start or
  into a module (tracepoint probes may live in modules);
- ftrace: the ``ftrace_call``/``ftrace_regs_call``/``ftrace_graph_call`` sites in the
  ftrace trampolines (``call``/``jmp`` to a function start or a module), and the
  ``__fentry__`` site at each function's entry (its first 5 bytes, after ENDBR64 when
  the function starts with one): NOP or ``call ftrace_caller``/``ftrace_regs_caller``
  is legitimate.  ``__mcount_loc`` is init data, freed after boot, so the site is
  recognised by its place, not looked up;
- a ``lock`` prefix turned into ``ds`` or back (SMP alternatives when CPUs come and go);
- any of these with an ``int3`` over its first byte (``text_poke_bp`` caught mid-way).

A change at a site is given a *verdict*: None (the kernel's own patch),
:data:`UNEXPLAINED` (not a patch of this kind of site: the caller reports it as a plain
change) or ``(severity, reason, target address or None)`` when the site holds an
encoding the kernel could write but pointing somewhere suspicious:

- critical: a jump at a function's entry (an inline hook) unless the function is a BPF
  dispatcher; a static call or an ftrace call site pointing anywhere but a function
  start or a module; a ``jmp rel32`` written where no site is (an inline hook, or an
  optimized kprobe, which keeps no table a probe could read cheaply);
- high: a function's entry site that calls something other than ftrace's own
  trampolines but inside a module or the kernel (an ftrace direct call, or a hook);
- medium: a function's entry site that calls a trampoline outside the kernel and
  modules (an ftrace or BPF trampoline: tracing or a BPF program; who registered it is
  a question for an ftrace probe, not covered), a BPF dispatcher jumping to its image,
  and a single byte turned into ``int3`` elsewhere ("possible kprobe", or a debugger's
  breakpoint).

The tables are read-only data: a forged entry is itself a change of read-only data,
which ``kernel_text`` reports whatever the verdicts say.  Not covered: the BPF
dispatcher of 6.2+ (a static call, covered as such), ``jcc`` static-call tail sites
(6.3+) and call-depth-tracking thunks (6.2+, patched at boot only).
"""

import bisect
import collections
import struct

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.probes.base import SEVERITIES
from vmi_agent.engine.probes.kernel_code import hexaddr

#: Jump-label or static-call entries decoded at most (6.1 has ~6,300 and ~4,100).
MAX_SITES = 1 << 20
#: A changed run longer than this is no patch site (those are 2 or 5 bytes, a few in a
#: row at most).
MAX_SITE_RUN = 16

NOP5 = (bytes.fromhex('0f1f440000'), bytes.fromhex('6666906690'),
        bytes.fromhex('3e8d742600'))
NOP2 = (bytes.fromhex('6690'),)
RET5 = bytes.fromhex('c3cccccccc')
XOR5 = (bytes.fromhex('2e2e2e31c0'), bytes.fromhex('66664831c0'))
ENDBR64 = bytes.fromhex('f30f1efa')
INT3, CALL, JMP32, JMP8 = 0xcc, 0xe8, 0xe9, 0xeb
SMP_LOCK = {0xf0, 0x3e}
#: First bytes an int3 may hide while text_poke_bp() rewrites a site.
FIRST_BYTES = bytes(sorted({CALL, JMP32, JMP8, 0xc3, 0x2e, 0x66, 0x0f, 0x3e}))
FTRACE_TARGETS = ('ftrace_caller', 'ftrace_regs_caller', 'ftrace_stub')
FTRACE_CALL_SITES = ('ftrace_call', 'ftrace_regs_call', 'ftrace_graph_call')
#: The symbols this module reads (for the probe's declaration).
SYMBOLS = ('__start___jump_table', '__stop___jump_table', '__start_static_call_sites',
           '__stop_static_call_sites') + FTRACE_TARGETS

UNEXPLAINED = 'unexplained'
#: Verdicts from best to worst: the kernel's own patch, the severities, unexplained.
_RANK = {None: 0, **{severity: i + 1 for i, severity in enumerate(SEVERITIES)},
         UNEXPLAINED: len(SEVERITIES) + 1}
_S32 = struct.Struct('<i')

#: A patch site: ``kind`` (jump, static_call, ftrace_call, entry), its ``address``,
#: ``extra`` (a jump's target, an entry's function name) and ``size`` in bytes.
Site = collections.namedtuple('Site', 'kind address extra size')


class PatchSites:
    """Finds the patch site that holds a changed byte, and judges the change.

    One per probe run.  ``data`` arguments give the baseline and current bytes of a
    region by address (``old(addr, n)``, ``new(addr, n)``; see
    :class:`~vmi_agent.engine.probes.image_diff.RegionBytes`).
    """

    def __init__(self, kernel, code, modules):
        self.kernel, self.code, self.modules = kernel, code, modules
        self.tables = SiteTables(kernel)

    def site_at(self, data, pos):
        """The :class:`Site` holding byte ``pos``, or None."""
        jump = self.tables.jump_at(pos)
        if jump is not None:
            code, target = jump
            size = _jump_size(data, code)
            if pos < code + size:
                return Site('jump', code, target, size)
        call = self.tables.static_call_at(pos)
        if call is not None and pos < call + 5:
            return Site('static_call', call, None, 5)
        found = self.kernel.symbol_at(pos)
        if found is None:
            return None
        name, offset = found
        base = pos - offset
        if name.startswith('__SCT__') and offset < 5:
            return Site('static_call', base, None, 5)
        if name in FTRACE_CALL_SITES and offset < 5:
            return Site('ftrace_call', base, None, 5)
        site = base + 4 if data.old(base, 4) == ENDBR64 else base
        if self.code.in_text(base) and site <= pos < site + 5:
            return Site('entry', site, name, 5)
        return None

    def verdict(self, data, site):
        """The verdict on a change at ``site``.

        Its baseline and its current bytes must both be encodings the kernel writes
        there: a site that did not hold one in the baseline is not this kind of site.
        """
        judge = {'jump': self._jump, 'static_call': self._call_site,
                 'ftrace_call': self._call_site, 'entry': self._entry}[site.kind]
        extra = (site.extra, site.size) if site.kind == 'jump' else site.extra
        old, new = data.old(site.address, site.size), data.new(site.address, site.size)
        if (old is None or new is None
                or _settle(judge, site.address, extra, old) == UNEXPLAINED):
            return UNEXPLAINED
        return _settle(judge, site.address, extra, new)

    @staticmethod
    def loose_verdict(data, start, end):
        """The verdict on a change of text ``[start, end)`` at no patch site.

        Never UNEXPLAINED: what is not an SMP lock switch or a breakpoint is critical.
        """
        old, new = data.old(start, end - start), data.new(start, end - start)
        if end - start == 1 and {old[0], new[0]} == SMP_LOCK:
            return None
        if end - start == 1 and new[0] == INT3:
            return 'medium', 'an int3 breakpoint (possible kprobe or debugger)', None
        jump = data.new(start, 5)
        if jump and jump[0] == JMP32:
            target = start + 5 + _S32.unpack_from(jump, 1)[0]
            return 'critical', ('a jump to %s was written (an inline hook, or an '
                                'optimized kprobe)' % hexaddr(target)), target
        return 'critical', 'code changed', None

    # -- the encodings each kind of site may hold -----------------------------------------
    @staticmethod
    def _jump(site, extra, data):
        target, size = extra
        if size == 5:
            ok = data in NOP5 or data == bytes([JMP32]) + _rel32(site, 5, target)
        else:
            rel = target - (site + 2)
            ok = data in NOP2 or (-128 <= rel < 128 and data == bytes([JMP8, rel & 0xff]))
        return None if ok else UNEXPLAINED

    def _call_site(self, site, extra, data):
        if data in NOP5 or data == RET5 or data in XOR5:
            return None
        if data[0] not in (CALL, JMP32):
            return UNEXPLAINED
        target = site + 5 + _S32.unpack_from(data, 1)[0]
        if (self.code.function_at(self.kernel, target) is not None
                or self.modules.find(target) is not None):
            return None
        return 'critical', 'a patched call site points to %s' % hexaddr(target), target

    def _entry(self, site, name, data):
        if data in NOP5:
            return None
        if data[0] not in (CALL, JMP32):
            return UNEXPLAINED
        target = site + 5 + _S32.unpack_from(data, 1)[0]
        if data[0] == JMP32:
            if name.startswith('bpf_dispatcher_'):
                return 'medium', 'a BPF dispatcher jumps to its image at %s' % (
                    hexaddr(target)), target
            return 'critical', 'a function entry jumps to %s (an inline hook)' % (
                hexaddr(target)), target
        function = self.code.function_at(self.kernel, target)
        if function in FTRACE_TARGETS:
            return None
        if function is None and self.modules.find(target) is None \
                and not self.code.in_image(target):
            return 'medium', ('a function entry calls a trampoline at %s outside the '
                              'kernel and its modules (ftrace or BPF tracing?)'
                              % hexaddr(target)), target
        return 'high', 'a function entry calls %s (an ftrace direct call or a hook)' % (
            hexaddr(target)), target


def _settle(judge, site, extra, data):
    """The verdict for ``data``, reading an int3 first byte as an in-flight patch."""
    if data[0] != INT3:
        return judge(site, extra, data)
    verdicts = [judge(site, extra, bytes([first]) + data[1:]) for first in FIRST_BYTES]
    return min(verdicts, key=_rank)


def _rank(verdict):
    return _RANK[verdict if verdict in (None, UNEXPLAINED) else verdict[0]]


def _jump_size(data, code):
    """The size of the jump-label site at ``code``: 2 or 5 bytes.

    2 for a 2-byte NOP or ``jmp rel8``, else 5, as the kernel's
    ``arch_jump_entry_size()`` decides from the instruction there.
    """
    for version in (data.old(code, 2), data.new(code, 2)):
        if version and (version[0] == JMP8 or version in NOP2):
            return 2
    return 5


def _rel32(site, size, target):
    rel = target - (site + size)
    if not -(1 << 31) <= rel < 1 << 31:
        return b'?'
    return _S32.pack(rel)


class SiteTables:
    """Where the kernel's tables say it patches its text: jump labels and static calls.

    Read from the guest on first use in a run: only runs that find changed text need
    them.  Decoding is the costly part (sorting 6,300 jump entries takes about 10 ms on
    6.1), and a table does not change after boot, so the last decoding of each table
    is kept per kernel and reused while the table's bytes are the same.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self._decoded = kernel.memo(_DecodedTables).tables
        self._jumps = self._calls = None

    def jump_at(self, addr):
        """``(code, target)`` of the jump-label site at or before ``addr``, or None."""
        if self._jumps is None:
            entry = self.kernel.memo(JumpEntry)
            self._jumps = self._decode('__start___jump_table', '__stop___jump_table',
                                       entry.size, entry.decode)
        codes, targets = self._jumps
        i = bisect.bisect_right(codes, addr) - 1
        return (codes[i], targets[i]) if i >= 0 else None

    def static_call_at(self, addr):
        """Address of the static-call site at or before ``addr``, or None."""
        if self._calls is None:
            self._calls = self._decode('__start_static_call_sites',
                                       '__stop_static_call_sites', 8, _decode_calls)
        i = bisect.bisect_right(self._calls, addr) - 1
        return self._calls[i] if i >= 0 else None

    def _decode(self, first, last, size, decode):
        """``decode(start, raw)`` of the table ``first``..``last`` of ``size``-byte
        entries, or the kept result if the table's bytes have not changed.
        """
        table = self._read(first, last, size)
        kept = self._decoded.get(first)
        if kept is None or kept[0] != table:
            kept = self._decoded[first] = table, decode(*table)
        return kept[1]

    def _read(self, first, last, size):
        kernel = self.kernel
        start = kernel.profile.get_address(first)
        stop = kernel.profile.get_address(last)
        if start is None or stop is None or not 0 <= stop - start <= MAX_SITES * size:
            return None, b''
        start += kernel.location.shift
        return start, kernel.read(start, (stop + kernel.location.shift - start) // size * size)


class _DecodedTables:
    """The last decoding of each table: ``{first symbol: ((start, raw), decoded)}``."""

    def __init__(self, kernel):
        self.tables = {}


class JumpEntry:
    """``struct jump_entry`` of this kernel (memoised): its size, and its form.

    Relative (``s32 code, s32 target, long key``) since 5.0, absolute (already
    relocated) ``code, target, key`` words before; read from BTF, relative 16-byte
    entries when BTF does not say.
    """

    def __init__(self, kernel):
        size, self.absolute = 16, False
        try:
            layout = kernel.struct('jump_entry')
            size, self.absolute = layout.size, layout.member('code')['size'] == 8
        except VMIError:
            pass
        self.size = max(size, 16)

    def decode(self, start, raw):
        """Sorted ``(codes, targets)`` lists of the table at ``start``."""
        size = self.size
        pairs = []
        for at in range(0, len(raw) - size + 1, size):
            if self.absolute:
                pairs.append(struct.unpack_from('<QQ', raw, at))
            else:
                code, target = struct.unpack_from('<ii', raw, at)
                pairs.append((start + at + code, start + at + 4 + target))
        pairs.sort()
        return [p[0] for p in pairs], [p[1] for p in pairs]


def _decode_calls(start, raw):
    """Sorted addresses of the static-call sites (``s32 addr, s32 key`` relative)."""
    return sorted(start + at + rel
                  for at, (rel, _) in zip(range(0, len(raw), 8),
                                          struct.iter_unpack('<ii', raw)))
