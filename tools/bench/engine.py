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

"""Engine benchmark: pslist latency, attach time, and vmi-inspect end to end.

Boots the test-bed guest, then measures on its live RAM file:

* ``pslist`` latency (median, p99 over ``--walks`` walks) at about 70 and 1,000 tasks;
* attach time: first contact with the kernel (from its vmlinuz; from guest memory alone),
  then with the profile cached, in a new process and in-process;
* ``vmi-inspect --memory DUMP --vmlinux VMLINUZ pslist`` as a whole process: wall time
  and memory (peak RSS, and private memory, which excludes the mapped dump);
* the full probe set (every installed probe) at about 70 tasks: per probe and in total
  (``kernel_text``'s first run, which takes its baseline, is reported apart).

Prints one JSON document (and writes it to ``--output`` when given).  Run with
``tox -e bench`` or ``python -m tools.bench.engine``.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from tools.testbed.guest import Guest
from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory

#: The anchors measured on this kind of machine (issue "Introspection engine v1").
ANCHORS = {
    'volatility3_linux_pslist_end_to_end_s': 4.6, 'volatility3_peak_mib': 419,
    'libvmi_process_list_end_to_end_s': 1.0, 'libvmi_peak_mib': 531,
    'libvmi_walk_70_tasks_ms': 0.025,
    'volatility3_linux_check_syscall_s': 12.6,
}
TARGETS = {
    'end_to_end_s': 0.2, 'end_to_end_private_mib': 100, 'walk_70_ms': 0.1,
    'walk_1000_ms': 2.0, 'attach_cached_new_process_ms': 100,
    'attach_cached_in_process_ms': 20, 'first_contact_s': 10, 'probe_set_70_ms': 20,
}

#: Runs vmi-inspect's main() and reports the process's memory as it ends.
_MEASURED_CLI = '''
import json, sys
from vmi_agent.cmd import inspect
code = inspect.main(sys.argv[1:])
mem = {}
for name in ('/proc/self/status', '/proc/self/smaps_rollup'):
    for line in open(name):
        key, _, value = line.partition(':')
        if key in ('VmHWM', 'Private_Clean', 'Private_Dirty', 'Rss'):
            mem[key] = int(value.split()[0])
sys.stderr.write('MEMORY ' + json.dumps(mem) + '\\n')
sys.exit(code)
'''

_ATTACH_IN_NEW_PROCESS = '''
import sys, time
t0 = time.perf_counter()
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory
t1 = time.perf_counter()
attach(open_memory(sys.argv[1]), vmlinux=sys.argv[2], profile_dir=sys.argv[3])
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000)
'''


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summary_ms(seconds):
    ms = [s * 1000 for s in seconds]
    return {'n': len(ms), 'median_ms': round(statistics.median(ms), 4),
            'p99_ms': round(percentile(ms, 99), 4), 'min_ms': round(min(ms), 4)}


def walk_latency(kernel, walks):
    """Time ``walks`` pslist runs (each flushes the translation cache, as a run does)."""
    times, count = [], None
    for _ in range(walks):
        start = time.perf_counter()
        results, _ = probes.run_probes(kernel, ['pslist'])
        times.append(time.perf_counter() - start)
        assert results['pslist'].error is None, results['pslist'].error
        count = len(results['pslist'].records)
    out = summary_ms(times)
    out['tasks'] = count
    return out


def probe_set(kernel, runs, state_dir):
    """Every installed probe, ``runs`` times: per-probe and total latency."""
    names = probes.available()
    context = {'state_dir': state_dir, 'guest_id': 'bench'}
    first, first_timings = probes.run_probes(kernel, names, context)
    per_probe = {name: [] for name in names}
    totals = []
    for _ in range(runs):
        start = time.perf_counter()
        results, timings = probes.run_probes(kernel, names, context)
        totals.append(time.perf_counter() - start)
        for name, seconds in timings.items():
            per_probe[name].append(seconds)
    return {'probes': names, 'total': summary_ms(totals),
            'per_probe_median_ms': {n: round(statistics.median(t) * 1000, 3)
                                    for n, t in per_probe.items()},
            'first_run_ms': {n: round(t * 1000, 1) for n, t in first_timings.items()},
            'findings': sum(len(r.findings) for r in results.values()),
            'errors': {n: r.error for n, r in results.items() if r.error}}


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def attach_figures(guest, store):
    """Attach cold (from vmlinuz; from memory), cached in-process and in a new process."""
    out = {}
    with open_memory(guest.ram_path) as memory:
        _, cold = timed(lambda: attach(memory, vmlinux=guest.vmlinuz,
                                       profile_dir=os.path.join(store, 'img')))
        _, cold_mem = timed(lambda: attach(memory, profile_dir=os.path.join(store, 'mem')))
        cached = [timed(lambda: attach(memory, vmlinux=guest.vmlinuz,
                                       profile_dir=os.path.join(store, 'img')))[1]
                  for _ in range(20)]
        cached_mem = [timed(lambda: attach(memory,
                                           profile_dir=os.path.join(store, 'mem')))[1]
                      for _ in range(20)]
    out['first_contact_from_vmlinuz_s'] = round(cold, 3)
    out['first_contact_from_memory_only_s'] = round(cold_mem, 3)
    out['cached_in_process_with_vmlinuz'] = summary_ms(cached)
    out['cached_in_process_memory_only'] = summary_ms(cached_mem)
    runs = []
    for _ in range(10):
        res = subprocess.run([sys.executable, '-c', _ATTACH_IN_NEW_PROCESS,
                              str(guest.ram_path), str(guest.vmlinuz),
                              os.path.join(store, 'img')],
                             capture_output=True, text=True, check=True)
        runs.append([float(x) for x in res.stdout.split()])
    out['cached_new_process'] = {
        'imports_median_ms': round(statistics.median(r[0] for r in runs), 2),
        'attach_median_ms': round(statistics.median(r[1] for r in runs), 2)}
    return out


def end_to_end(guest, store, dump):
    """Whole-process vmi-inspect on a dump with the vmlinuz, profile cached."""
    argv = [sys.executable, '-c', _MEASURED_CLI, '--memory', dump, '--vmlinux',
            str(guest.vmlinuz), '--profile-dir', os.path.join(store, 'img'), '-f', 'json',
            'pslist']
    walls, mems = [], []
    for _ in range(10):
        start = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if res.returncode != 0:
            raise RuntimeError('vmi-inspect failed: %s' % res.stderr)
        mems.append(json.loads(res.stderr.split('MEMORY ', 1)[1]))
    return {'wall_median_s': round(statistics.median(walls), 3),
            'wall_p90_s': round(percentile(walls, 90), 3),
            'peak_rss_mib': round(max(m['VmHWM'] for m in mems) / 1024, 1),
            'private_mib': round(max(m['Private_Clean'] + m['Private_Dirty']
                                     for m in mems) / 1024, 1),
            'pyc_cached': not sys.flags.dont_write_bytecode}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--walks', type=int, default=200)
    parser.add_argument('--flavour', default='amd64')
    parser.add_argument('--output', help='also write the JSON here')
    args = parser.parse_args(argv)
    report = {'benchmark': 'engine', 'when': time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                           time.gmtime()),
              'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                          'platform': platform.platform()},
              'anchors': ANCHORS, 'targets': TARGETS}
    with tempfile.TemporaryDirectory() as tmp, Guest(flavour=args.flavour) as guest:
        report['guest'] = {'release': guest.release, 'memory_mb': guest.memory_mb,
                           'boot_s': round(guest.boot_seconds, 2)}
        report['attach'] = attach_figures(guest, tmp)
        with open_memory(guest.ram_path) as memory:
            kernel = attach(memory, vmlinux=guest.vmlinuz,
                            profile_dir=os.path.join(tmp, 'img'))
            have = len(guest.processes())
            guest.spawn('bench', max(0, 70 - have))
            report['pslist_70'] = walk_latency(kernel, args.walks)
            report['probe_set_70'] = probe_set(kernel, 30, os.path.join(tmp, 'state'))
            guest.spawn('bench', max(0, 1000 - len(guest.processes())))
            report['pslist_1000'] = walk_latency(kernel, args.walks)
            guest.stop_spawned()
        guest.spawn('bench', max(0, 70 - len(guest.processes())))
        dump = os.path.join(tmp, 'guest.elf')
        guest.dump(dump, 'elf')
        report['vmi_inspect_end_to_end'] = end_to_end(guest, tmp, dump)
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
