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

"""``vmi-inspect``: run probes on a memory image or a live guest's RAM file.

The engine on its own, with no agent, message bus or database: point it at a shared
RAM file while the guest runs, or at a dump, and name the probes.

Exit status: 0 when every probe ran, 1 when a probe reported an error (its result says
which), 2 when nothing could run (bad arguments, unreadable image, unknown kernel).
"""

import argparse
import json
import os
import sys

from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.memory import FORMATS, open_memory
from vmi_agent.engine.memory.ramfile import MACHINES


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error here."""

    def error(self, message):
        _fail(message)


def _fail(message):
    sys.stderr.write('vmi-inspect: error: %s\n' % message)
    sys.exit(2)


def build_parser():
    p = _Parser(prog='vmi-inspect', description=__doc__.split('\n\n')[0])
    p.add_argument('--memory', required=True, metavar='PATH',
                   help='guest RAM file (live, e.g. /dev/shm/...), raw dump or ELF core')
    p.add_argument('--format', default='auto', choices=FORMATS,
                   help='memory image format (default: auto)')
    p.add_argument('--machine', default='q35', choices=MACHINES,
                   help='machine type that laid out a raw RAM file (default: q35)')
    p.add_argument('--vmlinux', metavar='VMLINUZ_OR_VMLINUX',
                   help="the guest kernel's image; without it the kernel is profiled "
                        'from guest memory')
    p.add_argument('--system-map', metavar='FILE', help='a real System.map')
    p.add_argument('--kallsyms', metavar='FILE', help='a copy of /proc/kallsyms')
    p.add_argument('--profile-dir', metavar='DIR',
                   help='profile cache and operator-supplied kernel files '
                        '(default: $NOVA_VMI_PROFILES or ~/.cache/nova-vmi/profiles)')
    p.add_argument('--state-dir', metavar='DIR',
                   help='where probes keep state between runs, e.g. kernel_text '
                        'baselines (default: $NOVA_VMI_STATE or ~/.cache/nova-vmi/state)')
    p.add_argument('--guest-id', metavar='ID',
                   help='which guest this is, for per-guest state such as baselines '
                        '(default: the memory file\'s path)')
    p.add_argument('-f', '--output-format', dest='output', default='table',
                   choices=('json', 'table'), help='output format (default: table)')
    p.add_argument('probes', nargs='+', metavar='PROBE',
                   help='probes to run: %s' % ', '.join(probes.available()))
    return p


def inspect(args):
    """Attach and run the probes; return the JSON-ready report."""
    for path in (args.memory, args.vmlinux, args.system_map, args.kallsyms):
        if path and not os.path.isfile(path):
            raise VMIError('%s: no such file' % path)
    with open_memory(args.memory, args.format, args.machine) as memory:
        kernel = attach(memory, vmlinux=args.vmlinux, system_map=args.system_map,
                        kallsyms_file=args.kallsyms, profile_dir=args.profile_dir)
        context = {'state_dir': args.state_dir,
                   'guest_id': args.guest_id or os.path.realpath(args.memory)}
        results, _ = probes.run_probes(kernel, args.probes, context)
        return {'profile': {'release': kernel.release,
                            'build_id': kernel.profile.build_id,
                            'kaslr_shift': '0x%x' % kernel.kaslr_shift},
                'probes': {name: r.to_dict() for name, r in results.items()}}


def format_table(report):
    """A report for people: one aligned table per probe."""
    prof = report['profile']
    lines = ['kernel %s  (KASLR shift %s)' % (prof['release'], prof['kaslr_shift'])]
    for name, result in report['probes'].items():
        lines.append('')
        lines.append('== %s: %d records, %d findings'
                     % (name, len(result['records']), len(result['findings'])))
        if result['error']:
            lines.append('   error: %s' % result['error'])
        lines.extend(_table(result['records']))
        for f in result['findings']:
            lines.append('   [%s] %s: %s' % (f['severity'], f['kind'], f['summary']))
    return '\n'.join(lines)


def _table(records):
    if not records:
        return []
    cols = list(records[0])
    rows = [[str(r.get(c, '')) for c in cols] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    fmt = '   ' + '  '.join('%%-%ds' % w for w in widths)
    return [(fmt % tuple(row)).rstrip() for row in [cols] + rows]


def main(argv=None):
    args = build_parser().parse_args(argv)
    unknown = [p for p in args.probes if p not in probes.available()]
    if unknown:
        _fail('unknown probe %s (available: %s)'
              % (', '.join(unknown), ', '.join(probes.available())))
    try:
        report = inspect(args)
    except VMIError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail('interrupted')
    if args.output == 'json':
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write('\n')
    else:
        print(format_table(report))
    return 1 if any(r['error'] for r in report['probes'].values()) else 0


if __name__ == '__main__':
    sys.exit(main())
