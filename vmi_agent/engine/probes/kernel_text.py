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

"""``kernel_text``: has the kernel's code or read-only data changed since the baseline?

Inline hooks (a ``jmp`` over the first bytes of ``vfs_read``), patched dispatch (the
``x64_sys_call`` switch of recent kernels) and rewritten read-only tables (the system
call table is ``const``) all change bytes that should not change.  The probe hashes
the kernel image's text (``_stext``..``_etext``) and read-only data
(``__start_rodata``..``__end_rodata``, which includes ``ro_after_init`` data and the
jump-label and static-call tables) page by page with SHA-256, straight from guest
physical memory (the image is physically contiguous), and compares the digests with a
*baseline* taken on the first run for this guest and this kernel build (see
:mod:`vmi_agent.engine.baseline`; the baseline keeps the pages too, compressed, so that
a changed page can be diffed byte by byte).

The kernel legitimately rewrites its text after boot.  Alternatives, paravirt and
retpoline patching happen during boot, before any baseline.  Later, on a running
kernel, and recognised here at the exact sites where the kernel does them, with the
exact encodings it writes (both the baseline bytes and the current bytes must be one):

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

Everything else that changed is reported as ``kernel_text_modified``, one finding per
region, severity and reason (enabling the function tracer changes ~40,000 function
entries: one finding that counts them), naming the symbols the changes fall in and
listing the first changes with their old and new bytes:

- critical: any other change of text or read-only data; a jump at a function's entry
  (an inline hook) unless the function is a BPF dispatcher; a static call or an
  ftrace call site pointing anywhere but a function start or a module; a text page
  that the page tables map somewhere else than the kernel image (a shadow copy: the
  CPU would run other bytes than the ones hashed);
- high: a function's entry site that calls something other than ftrace's own
  trampolines but inside a module or the kernel (an ftrace direct call, or a hook);
- medium: a function's entry site that calls a trampoline outside the kernel and
  modules (an ftrace or BPF trampoline: tracing or a BPF program; who registered it is
  a question for an ftrace probe, not covered), a BPF dispatcher jumping to its image,
  and a single byte turned into ``int3`` elsewhere (a kprobe, or a debugger's
  breakpoint: kprobes do not keep a table a probe could read cheaply, so "possible
  kprobe").

Seen on Debian's 6.1 under TCG: flipping ``kernel.sched_schedstats`` rewrites 76 jump
sites on 28 pages (no finding); tracing one function with the function tracer makes
its entry call a dynamic trampoline (medium); a kprobe is an ``int3`` (medium) until
the kprobe optimizer turns it into a ``jmp`` (critical, see below).

Work is bounded whatever the guest wrote: pages diffed (:data:`MAX_DIFF_PAGES`),
differing runs (:data:`MAX_RUNS`), patch-site look-ups (:data:`MAX_SITE_LOOKUPS`) and
findings (:data:`MAX_FINDINGS`); what is past a bound is counted in one more finding.
A clean run costs the hashing of the image (about 23 MiB on 6.1: 30-60 ms) and a few
page-table reads.

Not covered: optimized kprobes (a ``jmp`` to a detour buffer: reported as critical),
the BPF dispatcher of 6.2+ (a static call, covered as such), ``jcc`` static-call tail
sites (6.3+), call-depth-tracking thunks (6.2+, patched at boot only), text patched
before the first run (the baseline is trust-on-first-use), and module text (modules
are not part of the image).  A baseline belongs to one boot layout: when the KASLR
shift differs from the baseline's (the guest rebooted), the pages are not comparable
(relocated addresses differ) and the baseline is renewed, which the records say.

The baseline store and the guest's identity come from the run context (``state_dir``,
``guest_id``, see ``Probe``); without them they default to ``$NOVA_VMI_STATE`` (else
``~/.cache/nova-vmi/state``) and to the memory source's path.
"""

import bisect
import struct

from vmi_agent.engine.baseline import (
    PAGE_SIZE, BaselineStore, PageImage, default_state_path, page_digests)
from vmi_agent.engine.errors import ProfileError, VMIError
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.probes.kernel_code import (
    KernelCode, ModuleMap, describe, format_symbol, hexaddr)

REGIONS = (('text', '_stext', '_etext'), ('rodata', '__start_rodata', '__end_rodata'))
#: A kernel image's text is 10-30 MiB; refuse a profile that claims more.
MAX_REGION = 128 << 20
#: Changed pages diffed in detail per run (enabling the function tracer changes every
#: text page: 3,600 on 6.1); the rest are counted in one finding.
MAX_DIFF_PAGES = 16384
#: Differing runs examined per run, and per page (a legitimately patched page has tens).
MAX_RUNS = 100000
MAX_PAGE_RUNS = 1024
#: Findings per run (one per kind of change) before the rest are folded into one.
MAX_FINDINGS = 64
#: Changes and symbols a finding lists (it counts them all).
MAX_LISTED = 16
#: Jump-label or static-call entries decoded at most (6.1 has ~6,300 and ~4,100).
MAX_SITES = 1 << 20
#: A changed run longer than this is no patch site (those are 2 or 5 bytes, a few in a
#: row at most).
MAX_SITE_RUN = 16
#: Patch-site look-ups per run (enabling the function tracer needs ~40,000); past it,
#: changes are reported without looking for the sites that could explain them.
MAX_SITE_LOOKUPS = 200000
#: Unexplained changes closer than this are reported as one.
MERGE_GAP = 16
SHOW_BYTES = 32

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

#: A verdict: None (a legitimate patch), UNEXPLAINED (not a patch of this kind of
#: site) or ``(severity, reason, target address or None)``.
UNEXPLAINED = 'unexplained'
_RANK = {None: 0, 'low': 1, 'medium': 2, 'high': 3, 'critical': 4, UNEXPLAINED: 5}
_S32 = struct.Struct('<i')


class Region:
    """A section of the kernel image: runtime ``[start, end)`` at physical ``phys``."""

    def __init__(self, name, start, end, phys):
        self.name, self.start, self.end, self.phys = name, start, end, phys

    @property
    def size(self):
        return self.end - self.start

    def page_count(self):
        return -(-self.size // PAGE_SIZE)


class ImageRegions:
    """The sections :class:`KernelText` hashes, for this kernel (memoised)."""

    def __init__(self, kernel):
        self.regions = []
        for name, first, last in REGIONS:
            start = kernel.profile.get_address(first)
            end = kernel.profile.get_address(last)
            if start is None or end is None:
                if name == 'text':
                    raise ProfileError('kernel has no %s/%s symbols' % (first, last))
                continue
            if not 0 < end - start <= MAX_REGION:
                raise ProfileError('%s..%s is not a plausible section (%d bytes)'
                                   % (first, last, end - start))
            shift = kernel.location.shift
            self.regions.append(Region(name, start + shift, end + shift,
                                       kernel.location.phys_of_link(start)))


class KernelText(Probe):
    name = 'kernel_text'
    structs = ('module', 'list_head')
    enums = ('module_state',)
    symbols = ('_stext', '_etext', '_text', '_end', '__start_rodata', '__end_rodata',
               '__start___jump_table', '__stop___jump_table', '__start_static_call_sites',
               '__stop_static_call_sites', 'modules') + FTRACE_TARGETS

    def run(self, kernel):
        regions = kernel.memo(ImageRegions).regions
        store = BaselineStore(self.context.get('state_dir') or default_state_path())
        guest = (self.context.get('guest_id')
                 or str(getattr(kernel.memory, 'path', None) or 'unknown'))
        findings = []
        for region in regions:
            findings.extend(_mapping_findings(kernel, region))
        views = [kernel.memory.view(r.phys, r.size) for r in regions]
        try:
            meta = {'kaslr_shift': kernel.location.shift,
                    'regions': {r.name: [r.start, r.size] for r in regions}}
            stored = store.load(guest, kernel.profile.key)
            if stored is None or stored[0] != meta or set(stored[1]) != set(meta['regions']):
                images = {r.name: PageImage.capture(r.start, bytes(v))
                          for r, v in zip(regions, views)}
                store.save(guest, kernel.profile.key, meta, images)
                status = 'created' if stored is None else 'renewed'
                records = [_record(r, status) for r in regions]
                return ProbeResult(records=records, findings=findings)
            records = []
            comparison = _Comparison(kernel)
            for region, view in zip(regions, views):
                image = stored[1][region.name]
                changed = _changed_pages(image, page_digests(view))
                patched = comparison.region(region, image, view, changed)
                records.append(_record(region, 'compared', len(changed), patched))
            findings.extend(comparison.findings())
            return ProbeResult(records=records, findings=findings)
        finally:
            for view in views:
                view.release()


def _record(region, status, changed=0, patched=0):
    return {'region': region.name, 'start': hexaddr(region.start),
            'end': hexaddr(region.end), 'pages': region.page_count(),
            'changed_pages': changed, 'patched_sites': patched, 'baseline': status}


def _changed_pages(image, digests):
    if digests == image.digests:
        return []
    size = len(image.digest(0))
    return [i for i in range(image.pages)
            if digests[i * size:(i + 1) * size] != image.digest(i)]


def _mapping_findings(kernel, region):
    """Critical findings where the page tables do not map the section onto the image.

    A rootkit can leave the image alone and point the page tables at a modified copy:
    the CPU then runs bytes that the hashes never saw.  Each leaf mapping of the
    section must be the image's own physical pages.
    """
    bad = []
    for vaddr, size, paddr in _leaves(kernel, region.start, region.end):
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


_PRESENT, _LARGE = 0x1, 0x80
_FRAME_MASKS = {12: 0x000ffffffffff000, 21: 0x000fffffffe00000, 30: 0x000fffffc0000000}


def _leaves(kernel, start, end):
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


def diff_runs(old, new):
    """``[(start, end)]`` offsets of the maximal runs where ``old`` and ``new`` differ."""
    size = min(len(old), len(new))
    pad = -size % 8
    a = memoryview(bytes(old[:size]) + bytes(pad)).cast('Q')
    b = memoryview(bytes(new[:size]) + bytes(pad)).cast('Q')
    runs = []
    for word in range(len(a)):
        if a[word] == b[word]:
            continue
        for pos in range(word * 8, min(word * 8 + 8, size)):
            if old[pos] != new[pos]:
                if runs and runs[-1][1] == pos:
                    runs[-1][1] = pos + 1
                else:
                    runs.append([pos, pos + 1])
    return [tuple(r) for r in runs]


class _Bytes:
    """Baseline and live bytes of one region, by runtime address.

    The comparison reads the same few pages many times (a site, its neighbours), in
    address order: the last page of each kind is kept.
    """

    def __init__(self, region, image, view):
        self.region, self.image, self.view = region, image, view
        self._last = {}

    def _get(self, addr, size, which):
        region = self.region
        if addr < region.start or addr + size > region.end:
            return None
        out = b''
        while size > 0:
            index, offset = divmod(addr - region.start, PAGE_SIZE)
            chunk = self._page(which, index)[offset:offset + size]
            out += chunk
            addr += len(chunk)
            size -= len(chunk)
        return out

    def _page(self, which, index):
        last = self._last.get(which)
        if last is not None and last[0] == index:
            return last[1]
        if which == 'old':
            page = self.image.page(index)
        else:
            start = index * PAGE_SIZE
            page = bytes(self.view[start:start + PAGE_SIZE])
        self._last[which] = index, page
        return page

    def old_page(self, index):
        return self._page('old', index)

    def new_page(self, index):
        return self._page('new', index)

    def old(self, addr, size):
        return self._get(addr, size, 'old')

    def new(self, addr, size):
        return self._get(addr, size, 'new')


class _Comparison:
    """Diffs changed pages and sorts their changes into patches and findings."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.code = kernel.memo(KernelCode)
        self.modules = ModuleMap(kernel)
        self.sites = PatchSites(kernel)
        self._groups = {}
        self._overflow = {'changes': 0, 'worst': 'low', 'addresses': []}
        self._skipped = []
        self._runs = self._lookups = 0

    # -- per region ---------------------------------------------------------------------
    def region(self, region, image, view, changed):
        """Analyse the changed pages of ``region``; return how many patch sites changed.

        Pages are diffed and their changes sorted in address order, so that the
        baseline's compressed blocks are read in order, each about once.
        """
        if not changed:
            return 0
        data = _Bytes(region, image, view)
        verdicts, loose, patched = {}, [], 0
        for done, index in enumerate(changed):
            if done >= MAX_DIFF_PAGES or self._runs >= MAX_RUNS:
                self._skipped.append((region, changed[done:]))
                break
            base = region.start + index * PAGE_SIZE
            runs = diff_runs(data.old_page(index), data.new_page(index))
            self._runs += len(runs)
            if len(runs) > MAX_PAGE_RUNS:       # rewritten wholesale: one change
                runs = [(runs[0][0], runs[-1][1])]
            for start, end in runs:
                start, end = base + start, base + end
                if (region.name != 'text' or end - start > MAX_SITE_RUN
                        or self._lookups >= MAX_SITE_LOOKUPS):
                    _push(loose, start, end)
                    continue
                pos = start
                while pos < end:            # a run may span adjacent sites
                    self._lookups += 1
                    key = self._site_of(data, pos)
                    if key is None:
                        _push(loose, pos, pos + 1)
                        pos += 1
                        continue
                    stop = min(end, key[1] + key[3])
                    if key not in verdicts:
                        verdict = verdicts[key] = self._judge_site(data, *key)
                        if verdict is None:
                            patched += 1
                        elif verdict != UNEXPLAINED:
                            severity, reason, target = verdict
                            self._add(data, region, key[1], key[1] + key[3], severity,
                                      reason, target)
                    if verdicts[key] == UNEXPLAINED:
                        _push(loose, pos, stop)
                    pos = stop
        for start, end in _merge(loose):
            if region.name != 'text':
                self._add(data, region, start, end, 'critical', 'read-only data changed')
                continue
            verdict = self._judge_loose(data, start, end)
            if verdict is None:
                patched += 1
            else:
                self._add(data, region, start, end, *verdict)
        return patched

    def _site_of(self, data, pos):
        """``(kind, site, extra, size)`` of the patch site holding byte ``pos``, or None."""
        jump = self.sites.jump_at(pos)
        if jump is not None:
            code, target = jump
            size = _jump_size(data, code)
            if pos < code + size:
                return 'jump', code, target, size
        call = self.sites.static_call_at(pos)
        if call is not None and pos < call + 5:
            return 'static_call', call, None, 5
        found = self.kernel.symbol_at(pos)
        if found is None:
            return None
        name, offset = found
        base = pos - offset
        if name.startswith('__SCT__') and offset < 5:
            return 'static_call', base, None, 5
        if name in FTRACE_CALL_SITES and offset < 5:
            return 'ftrace_call', base, None, 5
        site = base + 4 if data.old(base, 4) == ENDBR64 else base
        if self.code.in_text(base) and site <= pos < site + 5:
            return 'entry', site, name, 5
        return None

    def _judge_site(self, data, kind, site, extra, size):
        """The verdict on a patch site.

        Its baseline and its current bytes must both be encodings the kernel writes
        there.
        """
        judge = {'jump': self._jump, 'static_call': self._call_site,
                 'ftrace_call': self._call_site, 'entry': self._entry}[kind]
        if kind == 'jump':
            extra = extra, size
        old, new = data.old(site, size), data.new(site, size)
        if old is None or new is None or _settle(judge, site, extra, old) == UNEXPLAINED:
            return UNEXPLAINED          # the baseline did not hold this kind of site there
        return _settle(judge, site, extra, new)

    # -- the kinds of site ----------------------------------------------------------------
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

    @staticmethod
    def _judge_loose(data, start, end):
        """``None`` or ``(severity, reason, target)`` for a change at no patch site."""
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

    # -- findings -------------------------------------------------------------------------
    def _add(self, data, region, start, end, severity, reason, target=None):
        """Count a change into the finding for its region, severity and reason."""
        key = region.name, severity, reason
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_FINDINGS:
                over = self._overflow
                over['changes'] += 1
                over['worst'] = max(over['worst'], severity, key=_RANK.get)
                if len(over['addresses']) < MAX_LISTED:
                    over['addresses'].append(start)
                return
            group = self._groups[key] = {'changes': 0, 'symbols': [], 'sites': [],
                                         'target': target}
        group['changes'] += 1
        if len(group['sites']) < MAX_LISTED:
            shown = min(end - start, SHOW_BYTES)
            old, new = data.old(start, shown), data.new(start, shown)
            group['sites'].append({'address': hexaddr(start), 'size': end - start,
                                   'symbol': format_symbol(self.kernel.symbol_at(start)),
                                   'old': old.hex() if old else None,
                                   'new': new.hex() if new else None})
        if len(group['symbols']) < MAX_LISTED:
            for name in _symbols_in(self.kernel, start, end):
                if name not in group['symbols'] and len(group['symbols']) < MAX_LISTED:
                    group['symbols'].append(name)

    def findings(self):
        out = []
        for (region, severity, reason), group in self._groups.items():
            first = group['sites'][0]
            evidence = {'region': region, 'reason': reason, 'changes': group['changes'],
                        'address': first['address'], 'size': first['size'],
                        'symbol': first['symbol'], 'symbols': group['symbols'],
                        'old': first['old'], 'new': first['new'], 'sites': group['sites']}
            if group['target'] is not None:
                evidence['target'] = describe(self.kernel, self.code, self.modules,
                                              group['target'])
            if group['changes'] == 1:
                where = 'in %s at %s' % (first['symbol'] or '?', first['address'])
            else:
                where = 'at %d places (%s%s)' % (
                    group['changes'], ', '.join(group['symbols'][:4]),
                    ', ...' if group['changes'] > 4 else '')
            out.append(Finding('kernel_text_modified', severity, 'kernel %s modified %s: %s'
                               % (region, where, reason), evidence))
        over = self._overflow
        if over['changes']:
            names = sorted({format_symbol(self.kernel.symbol_at(a)) or '?'
                            for a in over['addresses']})
            out.append(Finding('kernel_text_modified', over['worst'],
                               '%d more kernel changes of other kinds not listed'
                               % over['changes'],
                               {'changes': over['changes'], 'symbols': names,
                                'reason': 'too many kinds of changes'}))
        for region, pages in self._skipped:
            names = sorted({format_symbol(self.kernel.symbol_at(region.start + i * PAGE_SIZE))
                            or '?' for i in pages[:MAX_LISTED]})
            out.append(Finding('kernel_text_modified', 'critical',
                               '%d more changed kernel %s pages not diffed'
                               % (len(pages), region.name),
                               {'region': region.name, 'pages': len(pages),
                                'symbols': names, 'reason': 'too many changed pages'}))
        return out


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


def _push(runs, start, end):
    """Append ``[start, end)`` to address-ordered ``runs``, joining a touching run."""
    if runs and runs[-1][1] >= start:
        runs[-1][1] = max(runs[-1][1], end)
    else:
        runs.append([start, end])


def _merge(runs):
    merged = []
    for start, end in runs:
        if merged and start - merged[-1][1] < MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _symbols_in(kernel, start, end):
    """Names of the symbols that ``[start, end)`` touches (sampled, at most 16)."""
    names = []
    for addr in list(range(start, end, 16))[:256] + [end - 1]:
        found = kernel.symbol_at(addr)
        if found is not None and found[0] not in names:
            names.append(found[0])
            if len(names) == 16:
                break
    return names


class PatchSites:
    """Where the kernel patches its own text: jump labels and static calls.

    Decoded from the kernel's tables on first use (only runs that find changed text
    need them).  The tables are read-only data, so a forged entry would itself be a
    change of read-only data, reported as such.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self._jumps = self._calls = None

    def jump_at(self, addr):
        """``(code, target)`` of the jump-label site at or before ``addr``, or None."""
        if self._jumps is None:
            self._jumps = self._decode_jumps()
        codes, targets = self._jumps
        i = bisect.bisect_right(codes, addr) - 1
        return (codes[i], targets[i]) if i >= 0 else None

    def static_call_at(self, addr):
        """Address of the static-call site at or before ``addr``, or None."""
        if self._calls is None:
            self._calls = self._decode_calls()
        i = bisect.bisect_right(self._calls, addr) - 1
        return self._calls[i] if i >= 0 else None

    def _table(self, first, last, size):
        kernel = self.kernel
        start = kernel.profile.get_address(first)
        stop = kernel.profile.get_address(last)
        if start is None or stop is None or not 0 <= stop - start <= MAX_SITES * size:
            return None, b''
        start += kernel.location.shift
        return start, kernel.read(start, (stop + kernel.location.shift - start) // size * size)

    def _decode_jumps(self):
        """Sorted ``(code, target)`` lists of the jump table.

        ``struct jump_entry`` is relative (``s32 code, s32 target, long key``) since
        5.0, absolute (already relocated) ``code, target, key`` words before.
        """
        size, absolute = 16, False
        try:
            layout = self.kernel.struct('jump_entry')
            size, absolute = layout.size, layout.member('code')['size'] == 8
        except VMIError:
            pass
        size = max(size, 16)
        start, raw = self._table('__start___jump_table', '__stop___jump_table', size)
        pairs = []
        for at in range(0, len(raw) - size + 1, size):
            if absolute:
                pairs.append(struct.unpack_from('<QQ', raw, at))
            else:
                code, target = struct.unpack_from('<ii', raw, at)
                pairs.append((start + at + code, start + at + 4 + target))
        pairs.sort()
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _decode_calls(self):
        start, raw = self._table('__start_static_call_sites', '__stop_static_call_sites', 8)
        return sorted(start + at + rel
                      for at, (rel, _) in zip(range(0, len(raw), 8),
                                              struct.iter_unpack('<ii', raw)))
