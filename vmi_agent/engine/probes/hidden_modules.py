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

"""``hidden_modules``: loaded modules that are missing from the ``modules`` list.

A rootkit module hides by taking itself off the ``modules`` list, which ``lsmod``,
``/proc/modules`` and the ``modules`` probe read.  It keeps running, so its
``struct module`` is still in memory and usually still known elsewhere.  Three views,
keyed by the ``struct module`` address, are compared:

``list``
    the ``modules`` list (:func:`~vmi_agent.engine.probes.modules.module_list`);
``sysfs``
    the kobjects on ``module_kset`` (``/sys/module``): a loadable module's ``mkobj`` is
    a ``module_kobject`` embedded in its ``struct module``, with ``mkobj.mod`` pointing
    back to it (built-in modules' have ``mod == NULL`` and are skipped);
``memory``
    a scan of the pages mapped in the module area (:data:`SCAN_START` to
    :data:`SCAN_END`, found by walking the page tables, never page by page) for
    ``struct module`` images.  Candidates are anchored on what a loaded module holds
    about itself: ``mkobj.mod`` pointing to the struct (``mod_sysfs_init``), or ``list``
    links poisoned by ``list_del``/``list_del_rcu`` or pointing to themselves
    (``list_del_init``).  A candidate counts only if its name is a module name, its
    state a ``module_state``, its list links are kernel pointers, poison or itself, and
    it lies inside one of its own memory layouts (``core_layout``/``init_layout``, or
    ``mem[]`` from 6.4): a stale copy elsewhere does not.

A module seen by ``sysfs`` or ``memory`` but not by ``list`` is a ``hidden_module``
(critical).  The guest may be running while it is read, so the list is walked a second
time after the other views, and a module counts as listed if either walk saw it (a load
adds a module to the list before sysfs; an unload leaves it after).  A module being
torn down (state ``unformed``, or ``going`` with no sysfs entry) is off the list for a
moment by design: it is recorded, not reported.  A list or kset walk that breaks (a
cycle, a wild pointer; on a running guest also, rarely, a list changed mid-walk) or a
scan that exceeds its bounds is a finding of its own, and the views that worked still
count.

Records: one per module any view saw (``name``, ``address``, ``size``, ``state``,
``views``).  Findings: ``hidden_module`` (critical; evidence ``name``, ``address``,
``state``, ``views``, the module's own ``list_next``/``list_prev`` and whether the list
walk was ``list_intact``), ``module_view_broken`` (high) and ``module_scan_truncated``
(medium), each with the ``view`` concerned.

Not covered: a module that removes itself from the list *and* from sysfs *and* wipes
``mkobj.mod`` and its list links (or keeps no ``struct module`` in the module area);
a module that sets its own state to ``unformed`` (or to ``going`` and drops its sysfs
entry); code injected without a module at all.  Kernels without sysfs have two views;
the scan knows the x86-64 module area only.
"""

import re
import struct

from vmi_agent.engine.errors import GuestDataError, MemoryAccessError, VMIError
from vmi_agent.engine.paging import is_canonical
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.probes.modules import (MAX_MODULES, MODULE_NAME_LEN, ModuleFields,
                                             module_list)

#: The x86-64 module area: MODULES_VADDR is 0xffffffffc0000000 with KASLR (1 GiB kernel
#: image space), 0xffffffffa0000000 without; MODULES_END is 0xffffffffff000000.  The
#: scan starts at the lower bound, or past the kernel image if that ends higher.
SCAN_START = 0xffffffffa0000000
SCAN_END = 0xffffffffff000000
#: Bounds of one scan: far above the few MiB of modules a guest maps, and far below what
#: would let a hostile page table make the agent read gigabytes.
MAX_SCAN_PAGES = 1 << 16
MAX_PAGE_TABLES = 4096
#: Candidates checked in one scan: a few per loaded module in practice; a page crafted
#: full of anchors offers 512.
MAX_CANDIDATES = 1 << 16
#: Page tables and pages whose bytes a scan keeps to skip them next time (see
#: :class:`_ScanCache`): at most 2 MiB and 16 MiB of copies.
MAX_CACHED_TABLES = 512
MAX_CACHED_PAGES = 4096
#: include/linux/poison.h with CONFIG_ILLEGAL_POINTER_VALUE 0xdead000000000000 (x86-64)
#: and without it.
POISON_DELTAS = (0xdead000000000000, 0)
LIST_POISON1 = tuple(0x100 + d for d in POISON_DELTAS)
LIST_POISON2 = tuple(0x122 + d for d in POISON_DELTAS)
_POISONS = frozenset(LIST_POISON1 + LIST_POISON2)

_PAGE = 4096
_PRESENT = 0x1
_LARGE = 0x80
_FRAME = 0x000ffffffffff000
_LARGE_FRAME = {30: 0x000fffffc0000000, 21: 0x000fffffffe00000}
_ENTRIES = struct.Struct('<512Q')
_U64 = struct.Struct('<Q')
_NEXT_PREV = struct.Struct('<QQ')
_UINT = struct.Struct('<I')
#: KBUILD_MODNAME: file-name characters, '-' turned into '_' (some old names keep '-').
_MODULE_NAME = re.compile(rb'[A-Za-z0-9_-]{1,%d}\0' % (MODULE_NAME_LEN - 1))


class _ScanLimit(Exception):
    """The scan met one of its bounds."""


class HiddenModuleFields:
    """Offsets of what the views read, beyond :class:`ModuleFields`."""

    def __init__(self, kernel):
        self.module = kernel.memo(ModuleFields)
        module = kernel.struct('module')
        self.size = module.size
        self.states = set(self.module.state_names)
        # Each layout's base, from the size offsets ModuleFields found (6.1: core_layout
        # and init_layout; 6.4+: mem[]): base and size are members of the same struct.
        if module.has('mem'):
            layout = kernel.struct(module.member('mem')['elem_type'])
        else:
            layout = kernel.struct(module.member('core_layout')['type'])
        delta = layout.offset('size') - layout.offset('base')
        self.layouts = [(off - delta, off) for off in self.module.sizes]
        # sysfs: module_kset -> kset.list of kobject.entry, in module_kobject.kobj.
        self.sysfs = module.has('mkobj') and kernel.profile.get_address('module_kset')
        if self.sysfs:
            mkobj = kernel.struct('module_kobject')
            self.mkobj = module.offset('mkobj')
            self.mk_mod = mkobj.offset('mod')
            self.mk_entry = mkobj.offset('kobj') + kernel.struct('kobject').offset('entry')
            self.kset_list = kernel.struct('kset').offset('list')
            # A loaded module's mkobj.mod points to the module: the scan's anchor.
            self.self_ref = self.mkobj + self.mk_mod


class HiddenModules(Probe):
    name = 'hidden_modules'
    structs = ('module', 'module_kobject', 'kobject', 'kset', 'list_head')
    enums = ('module_state',)
    symbols = ('modules', 'module_kset', '_end')

    def run(self, kernel):
        fields = kernel.memo(HiddenModuleFields)
        findings = []
        listed, list_intact = _list_view(kernel, fields, findings)
        views = {addr: {'list'} for addr in listed}
        for addr in _sysfs_view(kernel, fields, findings):
            views.setdefault(addr, set()).add('sysfs')
        for addr in _memory_view(kernel, fields, findings):
            views.setdefault(addr, set()).add('memory')
        unlisted = [addr for addr in views if addr not in listed]
        if unlisted:
            # A second look: a module loaded while the other views were read.
            again, _ = _list_view(kernel, fields, [])
            listed.update(again)
            for addr in again:
                views.setdefault(addr, set()).add('list')
        records = []
        for addr in sorted(views):
            seen = views[addr]
            info = listed.get(addr) or _read(kernel, fields, addr)
            if info is None:
                continue                    # gone (unloaded) since a view saw it
            name, size, state = info
            records.append({'name': name, 'address': '0x%x' % addr, 'size': size,
                            'state': state, 'views': sorted(seen)})
            if addr in listed or _tearing_down(state, seen):
                continue
            findings.append(_hidden(kernel, fields, addr, name, state, seen, list_intact))
        return ProbeResult(records=records, findings=findings)


def _read(kernel, fields, addr):
    try:
        return fields.module.read(kernel, addr)
    except VMIError:
        return None


def _tearing_down(state, seen):
    """Off the list on purpose: a module being freed, or whose load failed.

    ``free_module`` removes the sysfs entry, sets ``unformed`` and only then unlinks;
    a failed load sets ``going`` and unlinks before any sysfs entry remains.
    """
    return state == 'unformed' or (state == 'going' and 'sysfs' not in seen)


def _hidden(kernel, fields, addr, name, state, seen, list_intact):
    try:
        nxt, prev = _NEXT_PREV.unpack(kernel.read(addr + fields.module.list, 16))
        links = {'list_next': '0x%x' % nxt, 'list_prev': '0x%x' % prev}
    except VMIError:
        links = {}
    views = sorted(seen)
    return Finding(
        'hidden_module', 'critical',
        'module %s at 0x%x is not on the modules list but is seen by %s'
        % (name, addr, ' and '.join(views)),
        dict({'name': name, 'address': '0x%x' % addr, 'state': state, 'views': views,
              'list_intact': list_intact}, **links))


def _broken(view, exc, findings):
    findings.append(Finding(
        'module_view_broken', 'high',
        'the %s view of the modules could not be read to its end: %s' % (view, exc),
        {'view': view, 'error': '%s: %s' % (type(exc).__name__, exc)}))


def _list_view(kernel, fields, findings):
    """``({address: (name, size, state)}, intact)`` of the modules list."""
    listed = {}
    try:
        for addr, info in module_list(kernel, fields.module):
            listed[addr] = info
    except VMIError as exc:
        _broken('list', exc, findings)
        return listed, False
    return listed, True


def _sysfs_view(kernel, fields, findings):
    """Addresses of the loadable modules whose kobject is on ``module_kset``."""
    if not fields.sysfs:
        return []
    found = []
    try:
        kset = kernel.u64(kernel.symbol('module_kset'))
        if not kset:
            raise GuestDataError('module_kset is NULL')
        head = kset + fields.kset_list
        for mk in kernel.walk_list(head, fields.mk_entry, limit=MAX_MODULES):
            mod = kernel.u64(mk + fields.mk_mod)
            # Built-in modules have no struct module; a loadable one embeds its kobject.
            if mod and mod + fields.mkobj == mk:
                found.append(mod)
    except VMIError as exc:
        _broken('sysfs', exc, findings)
    return found


def _memory_view(kernel, fields, findings):
    """Addresses of the ``struct module`` images found in the module area."""
    start = SCAN_START
    end = kernel.profile.get_address('_end')
    if end is not None:
        start = max(start, (end + kernel.location.shift + _PAGE - 1) & ~(_PAGE - 1))
    cache = kernel.memo(_ScanCache)
    previous, cache.pages = cache.pages, {}
    found, tried = set(), set()
    try:
        for vaddr, page in _mapped_pages(kernel, start, SCAN_END, cache):
            for addr in cache.anchors(fields, previous, vaddr, page):
                if addr in tried:
                    continue
                if len(tried) >= MAX_CANDIDATES:
                    raise _ScanLimit('more than %d candidate module structs'
                                     % MAX_CANDIDATES)
                tried.add(addr)
                if _is_module(kernel, fields, addr):
                    found.add(addr)
    except _ScanLimit as exc:
        findings.append(Finding(
            'module_scan_truncated', 'medium',
            'the scan of the module area stopped early: %s' % exc,
            {'view': 'memory', 'error': str(exc)}))
    return sorted(found)


class _ScanCache:
    """What the previous scan derived from each page table and page, with their bytes.

    Most of the module area does not change between two runs, so a run reuses the
    present entries of a page table, or the anchors of a page, whose bytes are exactly
    those they were computed from (one ``memcmp``), and computes them afresh otherwise.
    Only the candidates' verdicts (:func:`_is_module`) are read anew every run.  At most
    :data:`MAX_CACHED_TABLES` tables and :data:`MAX_CACHED_PAGES` pages are kept: a
    hostile guest that maps more only makes the rest uncached.
    """

    def __init__(self, kernel):
        self.tables = {}
        self.pages = {}

    def present(self, table, raw, first, last):
        """``[(index, entry)]`` of the present entries ``first..last`` of a table."""
        hit = self.tables.get(table)
        if hit is not None and hit[0] == raw and hit[1] == first and hit[2] == last:
            return hit[3]
        entries = _ENTRIES.unpack(raw)
        present = [(i, e) for i, e in enumerate(entries[first:last + 1], first)
                   if e & _PRESENT]
        if hit is not None or len(self.tables) < MAX_CACHED_TABLES:
            self.tables[table] = (raw, first, last, present)
        return present

    def anchors(self, fields, previous, vaddr, page):
        """The candidates anchored on one page (see :func:`_anchored`)."""
        hit = previous.get(vaddr)
        if hit is not None and hit[0] == page:
            anchors = hit[1]
        else:
            anchors = tuple(_anchored(fields, vaddr, page))
        if len(self.pages) < MAX_CACHED_PAGES:
            self.pages[vaddr] = (page, anchors)
        return anchors


def _mapped_pages(kernel, start, end, cache):
    """Yield ``(vaddr, bytes)`` of each present 4 KiB page in ``[start, end)``.

    Walks the kernel's page tables once, reading each table whole: the module area is
    a gigabyte or more, mostly unmapped.  ``start`` and ``end`` are page-aligned.
    Raises :class:`_ScanLimit` past :data:`MAX_PAGE_TABLES` tables or
    :data:`MAX_SCAN_PAGES` pages.
    """
    space = kernel.space
    bits = 48 if space.levels == 4 else 57
    mask = (1 << bits) - 1
    upper = ((1 << 64) - 1) & ~mask              # sign extension of the upper half
    lo, hi = start & mask, ((end - 1) & mask) + 1
    read = space.memory.read
    budget = {'tables': MAX_PAGE_TABLES, 'pages': MAX_SCAN_PAGES}

    def spend(what, n=1):
        budget[what] -= n
        if budget[what] < 0:
            raise _ScanLimit('more than %d %s mapped in the module area'
                             % ({'tables': MAX_PAGE_TABLES, 'pages': MAX_SCAN_PAGES}[what],
                                'page tables' if what == 'tables' else 'pages'))

    def page(paddr):
        spend('pages')
        try:
            return read(paddr, _PAGE)
        except MemoryAccessError:
            return None

    def walk(table, shift, base):
        spend('tables')
        try:
            raw = read(table, _PAGE)
        except MemoryAccessError:
            return                                  # a table outside RAM maps nothing
        span = 1 << shift
        first = max(0, (lo - base) >> shift)
        last = min(511, (hi - 1 - base) >> shift)
        if first > last:
            return
        for index, entry in cache.present(table, raw, first, last):
            vbase = base + index * span
            if shift == 12:
                # Inside [lo, hi): both are page-aligned and the index range clips.
                data = page(entry & _FRAME)
                if data is not None:
                    yield vbase | upper, data
            elif entry & _LARGE and shift in _LARGE_FRAME:
                frame = entry & _LARGE_FRAME[shift]
                for vaddr in range(max(vbase, lo), min(vbase + span, hi), _PAGE):
                    data = page(frame + vaddr - vbase)
                    if data is not None:
                        yield vaddr | upper, data
            else:
                yield from walk(entry & _FRAME, shift - 9, vbase)

    return walk(space.dtb, bits - 9, 0)


def _anchored(fields, vaddr, page):
    """Candidate ``struct module`` addresses from self-references on one page."""
    list_off = fields.module.list
    if fields.sysfs:
        # mkobj.mod == the module: a u64 equal to its own address minus self_ref.
        for slot, _ in _self_pointers(vaddr, page, fields.self_ref):
            yield vaddr + slot - fields.self_ref
    # list_del_init: list.next == list.prev == &list.
    for slot, _ in _self_pointers(vaddr, page, 0):
        if page[slot + 8:slot + 16] == page[slot:slot + 8]:
            yield vaddr + slot - list_off
    # list_del / list_del_rcu: list.prev is LIST_POISON2.
    for poison in LIST_POISON2:
        needle = _U64.pack(poison)
        at = page.find(needle)
        while at >= 0:
            if at % 8 == 0:
                yield vaddr + at - 8 - list_off
            at = page.find(needle, at + 1)


def _self_pointers(vaddr, page, displacement):
    """Yield ``(offset, value)`` of the aligned u64s that hold their own address.

    Less ``displacement``: the value a field holds when it points ``displacement``
    bytes before itself.  The values possible on one page share their upper six bytes
    (one or two patterns), so C-speed ``find`` calls do the search.
    """
    low, high = vaddr - displacement, vaddr + _PAGE - 8 - displacement
    needles = {_U64.pack(v & ((1 << 64) - 1))[2:] for v in (low, high)}
    for needle in needles:
        at = page.find(needle)
        while at >= 0:
            slot = at - 2
            if slot >= 0 and slot % 8 == 0:
                value = _U64.unpack_from(page, slot)[0]
                if value == (vaddr + slot - displacement) & ((1 << 64) - 1):
                    yield slot, value
            at = page.find(needle, at + 1)


def _is_module(kernel, fields, addr):
    """Whether a ``struct module`` that the kernel loaded is at ``addr``."""
    if addr % 8 or not is_canonical(addr, kernel.space.levels):
        return False
    try:
        data = kernel.read(addr, fields.size)
    except VMIError:
        return False
    mod = fields.module
    if _UINT.unpack_from(data, mod.state)[0] not in fields.states:
        return False
    if not _MODULE_NAME.match(data, mod.name, mod.name + MODULE_NAME_LEN):
        return False
    links = _NEXT_PREV.unpack_from(data, mod.list)
    if not all(_sane_link(kernel, link, addr + mod.list) for link in links):
        return False
    for base_off, size_off in fields.layouts:
        base = _U64.unpack_from(data, base_off)[0]
        size = _UINT.unpack_from(data, size_off)[0]
        if base <= addr and addr + fields.size <= base + size:
            return True
    return False


def _sane_link(kernel, link, own):
    """A list pointer a module can hold: kernel memory, poison, or its own links."""
    return (link == own or link in _POISONS
            or (link >> 63 and is_canonical(link, kernel.space.levels)))
