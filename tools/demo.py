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

from tools.testbed import assets, lkm
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
        caught = rootkit(guest, profiles, pids[0])
        ok = ok and caught is not False

    print()
    print('Summary: introspected a live %s guest from outside; first contact %.2f s, '
          'cached %.2f s; %s%s.' % (
              found.release, cold, warm,
              'everything matched the guest' if ok else 'MISMATCH',
              '; the rootkit and the process it hid were found' if caught else ''))
    return 0 if ok else 1


def rootkit(guest, profiles, pid):
    """Load a rootkit-style module that hides itself and ``pid``; True if both are found.

    None when the module cannot be built here (it needs Debian's linux-headers package).
    """
    step('a rootkit inside the guest: a kernel module (built against Debian\'s headers) '
         'hides itself and process %d' % pid)
    try:
        module = lkm.build(guest.release)
    except lkm.LkmBuildError as exc:
        print('    skipped: %s' % exc)
        return None
    with open(module, 'rb') as f:
        guest.put('/tmp/vmi_hide.ko', f.read())
    guest.insmod_file('/tmp/vmi_hide.ko', 'hide_self=1 hide_pid=%d' % pid)
    print("    inside the guest, /proc/modules has vmi_hide: %s"
          % ('vmi_hide' in guest.modules()))
    report, _ = vmi_inspect('--memory', guest.ram_path, '--profile-dir', profiles,
                            '-f', 'json', 'pslist', 'hidden_tasks', 'hidden_modules')
    probes = json.loads(report)['probes']
    listed = {r['pid'] for r in probes['pslist']['records']}
    print('    pslist (the task list) shows process %d: %s' % (pid, pid in listed))
    findings = probes['hidden_tasks']['findings'] + probes['hidden_modules']['findings']
    for f in findings:
        print('    [%s] %s: %s' % (f['severity'], f['kind'], f['summary']))
    kinds = {(f['kind'], f['evidence'].get('pid') or f['evidence'].get('name'))
             for f in findings}
    return {('hidden_task', pid), ('hidden_module', 'vmi_hide')} <= kinds


if __name__ == '__main__':
    sys.exit(main())
