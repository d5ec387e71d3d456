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

"""kernel_text benchmark: a clean compare before and after the in-process baseline copy.

Boots the test-bed guest and times ``kernel_text`` on its live RAM file (median of
``--runs`` runs, profile cached, baseline taken):

* ``before``: every page hashed with SHA-256 on every run, as the probe did before it
  kept a copy of the baseline (the copy budget set to 0 gives exactly that path);
* ``after``: the live image compared with the in-process copy (memcmp);
* ``first_compare_in_process``: a new attach comparing with an existing baseline
  (pages hashed once, the copy built), and the memory the copy takes;
* the same after a static key flip (``kernel.sched_schedstats``: jump-label sites on
  a few pages stay changed, so every run diffs them), when the guest allows it;
* the whole probe set at about 70 tasks;
* the primitives on this CPU for an image of this size: per-page SHA-256, BLAKE2b-128
  and CRC32 (the digests considered), and a memcmp of the whole image.

Prints one JSON document.  Run with ``python -m tools.bench.kernel_text``.
"""

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
import zlib

from tools.testbed.guest import Guest
from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.baseline import PAGE_SIZE
from vmi_agent.engine.memory import open_memory
from vmi_agent.engine.probes import image_diff
from vmi_agent.engine.probes.kernel_text import ImageRegions

SCHEDSTATS = '/proc/sys/kernel/sched_schedstats'


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def probe_ms(kernel, names, context, runs):
    """Median milliseconds of ``runs`` runs of ``names`` (the probe's own timing)."""
    times = []
    for _ in range(runs):
        results, seconds = probes.run_probes(kernel, names, context)
        for name, result in results.items():
            assert result.error is None, '%s: %s' % (name, result.error)
        times.append(sum(seconds.values()))
    return round(statistics.median(times) * 1000, 2)


def clean_compare(kernel, reattach, context, runs):
    """``kernel_text`` before (hash every page) and after (compare with the copy).

    "Before" runs on a kernel attached anew, whose copies are not kept (budget 0).
    """
    budget = image_diff.COPY_BUDGET
    image_diff.COPY_BUDGET = 0
    try:
        before = probe_ms(reattach(), ['kernel_text'], context, runs)
    finally:
        image_diff.COPY_BUDGET = budget
    probes.run_probes(kernel, ['kernel_text'], context)          # the copy is built
    return {'before_sha256_every_page_ms': before,
            'after_copy_memcmp_ms': probe_ms(kernel, ['kernel_text'], context, runs)}


def primitives(kernel, runs):
    """The candidate page digests and a whole-image memcmp, on the live image."""
    regions = kernel.memo(ImageRegions).regions
    views = [kernel.memory.view(r.phys, r.size) for r in regions]
    copies = [bytearray(v) for v in views]

    def per_page(digest):
        return lambda: [[digest(v[at:at + PAGE_SIZE]) for at in range(0, len(v), PAGE_SIZE)]
                        for v in views]
    try:
        return {
            'image_bytes': sum(len(v) for v in views),
            'sha256_per_page_ms': median_ms(
                per_page(lambda b: hashlib.sha256(b).digest()), runs),
            'blake2b_128_per_page_ms': median_ms(
                per_page(lambda b: hashlib.blake2b(b, digest_size=16).digest()), runs),
            'crc32_per_page_ms': median_ms(per_page(zlib.crc32), runs),
            'memcmp_whole_image_ms': median_ms(
                lambda: [c == v for c, v in zip(copies, views)], runs),
        }
    finally:
        for view in views:
            view.release()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--flavour', default='amd64')
    args = parser.parse_args(argv)
    report = {'benchmark': 'kernel_text', 'runs': args.runs,
              'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'machine': {'cpus': os.cpu_count(), 'python': platform.python_version()}}
    with tempfile.TemporaryDirectory() as tmp, Guest(flavour=args.flavour) as guest:
        report['guest'] = {'release': guest.release, 'memory_mb': guest.memory_mb}
        profiles = os.path.join(tmp, 'profiles')
        context = {'state_dir': os.path.join(tmp, 'state'), 'guest_id': 'bench'}
        with open_memory(guest.ram_path) as memory:
            def reattach():
                return attach(memory, vmlinux=guest.vmlinuz, profile_dir=profiles)
            kernel = reattach()
            guest.spawn('bench', max(0, 70 - len(guest.processes())))
            probes.run_probes(kernel, ['kernel_text'], context)     # the baseline
            report['primitives'] = primitives(kernel, args.runs)
            report['clean'] = clean_compare(kernel, reattach, context, args.runs)
            report['clean']['first_compare_in_process_ms'] = statistics.median(
                probe_ms(reattach(), ['kernel_text'], context, 1) for _ in range(5))
            report['clean']['copy_mib_per_guest'] = round(
                kernel.memo(image_diff.BaselineCopies).held / (1 << 20), 1)
            names = probes.available()
            probes.run_probes(kernel, names, context)
            report['probe_set_70'] = {'tasks': len(guest.processes()),
                                      'median_ms': probe_ms(kernel, names, context,
                                                            args.runs)}
            if guest.run_status('[ -w %s ]' % SCHEDSTATS).status == 0:
                guest.run('echo 1 > %s' % SCHEDSTATS)
                try:
                    results, _ = probes.run_probes(kernel, ['kernel_text'], context)
                    text = results['kernel_text'].records[0]
                    report['static_key_flipped'] = dict(
                        clean_compare(kernel, reattach, context, args.runs),
                        changed_pages=text['changed_pages'],
                        patched_sites=text['patched_sites'],
                        findings=len(results['kernel_text'].findings))
                finally:
                    guest.run('echo 0 > %s' % SCHEDSTATS)
            guest.stop_spawned()
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
