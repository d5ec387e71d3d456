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
call table is ``const``) all change bytes that should not change.  The probe compares
the kernel image's text (``_stext``..``_etext``) and read-only data
(``__start_rodata``..``__end_rodata``, which includes ``ro_after_init`` data and the
jump-label and static-call tables), page by page, straight from guest physical memory
(the image is physically contiguous), with a *baseline* taken on the first run for
this guest and this kernel build (:mod:`vmi_agent.engine.baseline`: SHA-256 digests of
the pages, and the pages, compressed, so that a changed page can be diffed byte by
byte).  The modules it uses, one job each:

- :mod:`~vmi_agent.engine.probes.image_mapping`: the page tables must map the sections
  onto the image itself, not onto a modified copy the comparison would never see;
- :mod:`~vmi_agent.engine.probes.image_diff`: which pages, and which bytes, differ from
  the baseline (fast: an in-process copy of the baseline compared at memcmp speed);
- :mod:`~vmi_agent.engine.probes.patch_sites`: the kernel rewrites its own text on a
  running system (jump labels, static calls, ftrace, SMP lock prefixes); a change at
  such a site, with an encoding the kernel writes there, is no finding.

Everything else that changed is reported as ``kernel_text_modified``, one finding per
region, severity and reason (enabling the function tracer changes ~40,000 function
entries: one finding that counts them), naming the symbols the changes fall in and
listing the first changes with their old and new bytes.  Any change of read-only data,
any change of text at no patch site, and any remapped page is critical; what a change
at a patch site is worth (critical for an inline hook, down to medium for tracing or a
possible kprobe) is said in :mod:`~vmi_agent.engine.probes.patch_sites`.

Seen on Debian's 6.1 under TCG: flipping ``kernel.sched_schedstats`` rewrites 76 jump
sites on 28 pages (no finding); tracing one function with the function tracer makes
its entry call a dynamic trampoline (medium); a kprobe is an ``int3`` (medium) until
the kprobe optimizer turns it into a ``jmp`` (critical).

Work is bounded whatever the guest wrote: pages diffed (:data:`MAX_DIFF_PAGES`),
differing runs (:data:`MAX_RUNS`), patch-site look-ups (:data:`MAX_SITE_LOOKUPS`) and
findings (:data:`MAX_FINDINGS`); what is past a bound is counted in one more finding.
A clean run costs a few milliseconds: reading the baseline's index, a memcmp of the
image (about 23 MiB on 6.1) and a few page-table reads.

Not covered: text patched before the first run (the baseline is trust-on-first-use),
and module text (modules are not part of the image).  A baseline belongs to one boot
layout: when the KASLR shift differs from the baseline's (the guest rebooted), the
pages are not comparable (relocated addresses differ) and the baseline is renewed,
which the records say.

The baseline store and the guest's identity come from the run context (``state_dir``,
``guest_id``, see ``Probe``); without them they default to ``$NOVA_VMI_STATE`` (else
``~/.cache/nova-vmi/state``) and to the memory source's path.
"""

from vmi_agent.engine.baseline import (
    PAGE_SIZE, BaselineStore, PageImage, default_state_path)
from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.probes.base import SEVERITIES, Finding, Probe, ProbeResult
from vmi_agent.engine.probes.image_diff import (
    BaselineCopies, RegionBytes, RegionCopy, diff_runs)
from vmi_agent.engine.probes.image_mapping import remapped_findings
from vmi_agent.engine.probes.kernel_code import (
    KernelCode, ModuleMap, describe, format_symbol, hexaddr)
from vmi_agent.engine.probes.patch_sites import (
    MAX_SITE_RUN, SYMBOLS as PATCH_SYMBOLS, UNEXPLAINED, PatchSites)

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
#: Patch-site look-ups per run (enabling the function tracer needs ~40,000); past it,
#: changes are reported without looking for the sites that could explain them.
MAX_SITE_LOOKUPS = 200000
#: Unexplained changes closer than this are reported as one.
MERGE_GAP = 16
SHOW_BYTES = 32


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
    """The sections :class:`KernelText` compares, for this kernel (memoised)."""

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
               'modules') + PATCH_SYMBOLS

    def run(self, kernel):
        regions = kernel.memo(ImageRegions).regions
        store = BaselineStore(self.context.get('state_dir') or default_state_path())
        guest = (self.context.get('guest_id')
                 or str(getattr(kernel.memory, 'path', None) or 'unknown'))
        findings = []
        for region in regions:
            findings.extend(remapped_findings(kernel, region))
        copies = kernel.memo(BaselineCopies)
        owner = store.path, guest, kernel.profile.key
        views = [kernel.memory.view(r.phys, r.size) for r in regions]
        try:
            meta = {'kaslr_shift': kernel.location.shift,
                    'regions': {r.name: [r.start, r.size] for r in regions}}
            stored = store.load(guest, kernel.profile.key)
            if stored is None or stored[0] != meta or set(stored[1]) != set(meta['regions']):
                data = {r.name: bytes(v) for r, v in zip(regions, views)}
                images = {r.name: PageImage.capture(r.start, data[r.name]) for r in regions}
                store.save(guest, kernel.profile.key, meta, images)
                for name, image in images.items():
                    copy = RegionCopy(memoryview(data[name]))
                    copies.keep(owner, name, image.digests, copy)
                status = 'created' if stored is None else 'renewed'
                records = [_record(r, status) for r in regions]
                return ProbeResult(records=records, findings=findings)
            records = []
            comparison = _Comparison(kernel)
            for region, view in zip(regions, views):
                image = stored[1][region.name]
                changed = copies.changed_pages(owner, region.name, image, view)
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


class _Comparison:
    """Diffs changed pages and sorts their changes into patches and findings."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.code = kernel.memo(KernelCode)
        self.modules = ModuleMap(kernel)
        self.sites = PatchSites(kernel, self.code, self.modules)
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
        data = RegionBytes(region, image, view)
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
                    site = self.sites.site_at(data, pos)
                    if site is None:
                        _push(loose, pos, pos + 1)
                        pos += 1
                        continue
                    stop = min(end, site.address + site.size)
                    if site not in verdicts:
                        verdict = verdicts[site] = self.sites.verdict(data, site)
                        if verdict is None:
                            patched += 1
                        elif verdict != UNEXPLAINED:
                            severity, reason, target = verdict
                            self._add(data, region, site.address, site.address + site.size,
                                      severity, reason, target)
                    if verdicts[site] == UNEXPLAINED:
                        _push(loose, pos, stop)
                    pos = stop
        for start, end in _merge(loose):
            if region.name != 'text':
                self._add(data, region, start, end, 'critical', 'read-only data changed')
                continue
            verdict = self.sites.loose_verdict(data, start, end)
            if verdict is None:
                patched += 1
            else:
                self._add(data, region, start, end, *verdict)
        return patched

    # -- findings -------------------------------------------------------------------------
    def _add(self, data, region, start, end, severity, reason, target=None):
        """Count a change into the finding for its region, severity and reason."""
        key = region.name, severity, reason
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_FINDINGS:
                over = self._overflow
                over['changes'] += 1
                over['worst'] = max(over['worst'], severity, key=SEVERITIES.index)
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


def _push(runs, start, end):
    """Append ``[start, end)`` to address-ordered ``runs``, joining a touching run."""
    if runs and runs[-1][1] >= start:
        runs[-1][1] = max(runs[-1][1], end)
    else:
        runs.append([start, end])


def _merge(runs):
    """``runs`` with those closer than MERGE_GAP joined: one change, one listing."""
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
