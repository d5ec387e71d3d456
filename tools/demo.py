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

"""The main job until the all-in-one exists: introspect a live Debian guest from outside.

Boots the test-bed guest (a real Debian kernel under QEMU, KASLR on), changes it from
inside (a process, a module), then runs ``vmi-inspect`` on its RAM file while it runs and
checks what it saw against the guest's own ``/proc``.  Run it with ``tools/demo``.
"""

import json
import shlex
import subprocess
import sys
import tempfile
import time

from tools.testbed import assets
from tools.testbed.guest import Guest


def step(text):
    print('==> %s' % text, flush=True)


def vmi_inspect(*args):
    argv = [sys.executable, '-m', 'vmi_agent.cmd.inspect', *map(str, args)]
    print('    $ vmi-inspect %s' % ' '.join(shlex.quote(str(a)) for a in args), flush=True)
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit('demo: vmi-inspect failed (%d): %s' % (out.returncode, out.stderr.strip()))
    return out.stdout, elapsed


def main():
    step('guest assets (Debian kernel package, busybox initramfs; cached after the '
         'first run)')
    found = assets.ensure_assets()
    print('    kernel %s' % found.release, flush=True)
    step('booting the guest under QEMU (TCG, 256 MiB, RAM in a shared file, KASLR on)')
    with Guest(assets=found) as guest, tempfile.TemporaryDirectory() as profiles:
        print('    booted in %.1f s; RAM file %s' % (guest.boot_seconds, guest.ram_path))
        step('inside the guest: start two processes called "crypto-miner", load "dummy"')
        pids = guest.spawn('crypto-miner', 2)
        guest.insmod('dummy')

        step('first contact: vmi-inspect with only the RAM file and the distribution vmlinuz')
        table, cold = vmi_inspect('--memory', guest.ram_path, '--vmlinux', guest.vmlinuz,
                                  '--profile-dir', profiles, 'pslist', 'modules')
        print('\n'.join('    ' + line for line in table.splitlines()))
        print('    (%.2f s: kernel types from its BTF, symbols from its kallsyms; '
              'profile cached)' % cold)

        step('again, with no kernel files at all: identified from guest memory, cached '
             'profile')
        report, warm = vmi_inspect('--memory', guest.ram_path, '--profile-dir', profiles,
                                   '-f', 'json', 'pslist', 'modules')
        report = json.loads(report)
        print('    %.2f s; kernel %s, KASLR shift %s'
              % (warm, report['profile']['release'], report['profile']['kaslr_shift']))

        step("checking against the guest's own /proc")
        seen = {r['pid']: r['comm'] for r in report['probes']['pslist']['records']
                if not r['kernel_thread']}
        truth = guest.user_processes()
        mods = {r['name'] for r in report['probes']['modules']['records']}
        ok = seen == truth and mods == set(guest.modules())
        ok = ok and all(seen.get(p) == 'crypto-miner' for p in pids)
        print('    user processes: %d seen from outside, %d in /proc: %s'
              % (len(seen), len(truth), 'identical' if seen == truth else 'DIFFERENT'))
        print('    modules: %s' % ', '.join(sorted(mods)))
        guest.rmmod('dummy')
        guest.stop(*pids)

    print()
    print('Summary: introspected a live %s guest from outside; first contact %.2f s, '
          'cached %.2f s; %s.' % (found.release, cold, warm,
                                  'everything matched the guest' if ok else 'MISMATCH'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
