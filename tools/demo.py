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

"""The all-in-one: nova-vmi end to end on one machine, on embedded defaults.

1. Boots the test-bed guest (a real Debian kernel under QEMU, KASLR on).
2. Starts the API, the listener and the agent in this process (SQLite, in-process
   messaging; ``--transport-url`` for RabbitMQ).
3. Asks for a run through the ``openstack`` CLI, then has the guest trigger one itself.
4. Tampers with the guest (a rootkit module inside it; credential and syscall-table
   writes from the host) and shows what the security probes find, through the CLI.

Ends with a short report; exit status 0 when every step saw what it should.  Run it
with ``tools/demo``.
"""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time

from tools.testbed import assets, lkm
from tools.testbed.controlplane import api_call
from tools.testbed.embedded import EmbeddedCloud, MEMORY_URL
from tools.testbed.guest import Guest
from tools.testbed.tamper import Tamper
from vmi_agent.engine.attach import attach
from vmi_agent.engine.linux.profile import default_store_path
from vmi_agent.engine.memory import open_memory
from vmi_agent.engine.probes.kernel_code import ModuleMap

SECURITY_PROBES = ['hidden_tasks', 'hidden_modules', 'creds', 'syscalls']
#: The syscall the host redirects (getuid's neighbour kill, 62: any slot would do).
SYSCALL = 62


class Demo:
    def __init__(self, transport_url, workdir=None):
        self.transport_url = transport_url
        self.workdir = workdir
        self.steps = 6
        self.step_no = 0
        self.checks = []

    def step(self, text):
        self.step_no += 1
        print('\n[%d/%d] %s' % (self.step_no, self.steps, text), flush=True)

    def check(self, ok, text):
        self.checks.append((ok, text))
        print('      %s %s' % ('ok' if ok else 'FAILED:', text), flush=True)
        return ok

    @contextlib.contextmanager
    def progress(self, text):
        """A line that counts seconds while a slow step runs (dots when not a TTY)."""
        done = threading.Event()
        started = time.monotonic()

        def tick():
            while not done.wait(1.0 if sys.stdout.isatty() else 10.0):
                elapsed = time.monotonic() - started
                if sys.stdout.isatty():
                    print('\r      %s ... %3.0f s' % (text, elapsed), end='', flush=True)
                else:
                    print('      %s ... still working (%.0f s)' % (text, elapsed),
                          flush=True)

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            if sys.stdout.isatty():
                print('\r' + ' ' * 70 + '\r', end='')
            print('      %s: %.1f s' % (text, time.monotonic() - started), flush=True)

    def cli(self, *args):
        """Run ``openstack <args>`` against the embedded API; its parsed JSON output."""
        argv = ['openstack', '--os-auth-type', 'none', '--os-introspection-endpoint',
                self.cloud.url] + list(args)
        shown = ['openstack'] + [a for a in args if a not in ('-f', 'json')]
        print('      $ %s' % ' '.join(shlex.quote(a) for a in shown), flush=True)
        out = subprocess.run([sys.executable, '-m', 'openstackclient.shell'] + argv[1:],
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise SystemExit('demo: the CLI failed (%d): %s'
                             % (out.returncode, out.stderr.strip()))
        return json.loads(out.stdout) if '-f' in args else out.stdout

    def wait_for(self, what, predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise SystemExit('demo: %s did not happen in %d s (log: %s)'
                                 % (what, timeout, self.cloud.log_path))
            time.sleep(0.2)

    # -- the steps ----------------------------------------------------------------------
    def run(self):
        print('nova-vmi all-in-one: the API, the listener and the agent in one process '
              '(SQLite, %s), one Debian guest under QEMU.'
              % ('in-process messaging' if self.transport_url == MEMORY_URL
                 else self.transport_url.split('@')[-1]))
        self.step('guest assets: a Debian kernel package and a busybox initramfs '
                  '(cached after the first run)')
        with self.progress('downloading and building'):
            found = assets.ensure_assets()
        print('      kernel %s' % found.release)
        self.step('booting the guest under QEMU (TCG, 256 MiB, RAM in a shared file)')
        with self.progress('booting'):
            guest = Guest(assets=found)
        with guest, EmbeddedCloud(self.transport_url, self.workdir) as self.cloud:
            self.guest = guest
            self.uuid = guest.uuid
            print('      instance %s' % self.uuid)
            self.start_services()
            self.requested_run()
            self.guest_triggered_run()
            self.tampering()
        return self.report()

    def start_services(self):
        self.step('starting nova-vmi-api, nova-vmi-listener and vmi-agent')
        self.cloud.add_guest(self.guest)
        self.wait_for('the agent reporting the guest',
                      lambda: _instance_known(self.cloud.url, self.uuid))
        print('      API %s; the agent on host %s sees the guest'
              % (self.cloud.url, self.cloud.host))

    def requested_run(self):
        self.step('a run requested through the CLI')
        self.cli('server', 'introspection', 'policy', 'set', self.uuid, '--probe', 'pslist',
                 '--probe', 'modules', '--guest-trigger', '--guest-trigger-rate', '5')
        pids = self.guest.spawn('crypto-miner', 2)
        run = self.cli('server', 'introspection', 'run', self.uuid, '--probe', 'pslist',
                       '--probe', 'modules', '--wait', '-f', 'json')
        shown = self.cli('server', 'introspection', 'show', run['id'], '-f', 'json')
        records = _records(self.cloud.url, run['id'], 'pslist')
        seen = {r['pid']: r['comm'] for r in records if not r['kernel_thread']}
        truth = self.guest.user_processes()
        print('      run %s: %s, %d processes, kernel %s'
              % (run['id'], shown['status'], len(records), shown['kernel_release']))
        self.check(shown['status'] == 'done', 'the run finished')
        self.check(seen == truth, 'user processes seen from outside (%d) are the '
                   "guest's own /proc (%d)" % (len(seen), len(truth)))
        self.check(all(seen.get(p) == 'crypto-miner' for p in pids),
                   'both "crypto-miner" processes started for the demo are there')
        self.miner = pids[0]

    def guest_triggered_run(self):
        self.step('the guest triggers a run itself (one byte to I/O port 0x402)')
        print('      (guest)$ vmi-trigger --port 0x402 0x54')

        def triggered():
            self.guest.trigger()
            status, body = api_call(self.cloud.url, 'GET',
                                    '/v1/instances/%s/runs' % self.uuid)
            runs = [r for r in body['runs'] if r['trigger'] == 'guest'
                    and r['status'] == 'done']
            return runs[0] if runs else None

        run = self.wait_for('a guest-triggered run', triggered, timeout=60)
        self.check(True, 'run %s started by the guest (%s), no API call involved'
                   % (run['id'], run['trigger_detail']))

    def tampering(self):
        self.step('tampering with the guest, then a security run through the CLI')
        with open_memory(self.guest.ram_path) as memory:
            kernel = attach(memory, profile_dir=default_store_path())
            tamper = Tamper(self.guest, kernel)
            hidden = self.rootkit()
            victim = self.guest.spawn('backdoor')[0]
            tamper.escalate(victim)
            print('      host: process %d (backdoor) given the kernel\'s own credentials '
                  '(init_cred)' % victim)
            self.guest.insmod('crc7')
            text = [s for s, _, name, label in ModuleMap(kernel).ranges()
                    if name == 'crc7' and label in ('core_text', 'text')][0]
            tamper.hook_syscall(SYSCALL, text + 0x10)
            print('      host: sys_call_table[%d] pointed into module crc7' % SYSCALL)
            try:
                args = ['server', 'introspection', 'run', self.uuid, '--wait', '-f', 'json']
                for probe in SECURITY_PROBES:
                    args[4:4] = ['--probe', probe]
                self.cli(*args)
                findings = self.cli('server', 'introspection', 'finding', 'list',
                                    '--server', self.uuid, '-f', 'json')
            finally:
                tamper.restore()
        for f in findings:
            print('      [%-8s] %s' % (_get(f, 'severity'), _get(f, 'summary')))
        kinds = {_get(f, 'kind') for f in findings}
        expected = {'cred_escalation', 'syscall_hook'}
        if hidden:
            expected |= {'hidden_task', 'hidden_module'}
        self.check(expected <= kinds, 'found: %s' % ', '.join(sorted(expected & kinds)))

    def rootkit(self):
        """Load a module that hides itself and the miner; False if it cannot be built."""
        try:
            module = lkm.build(self.guest.release)
        except lkm.LkmBuildError as exc:
            print('      rootkit module skipped: %s' % exc)
            return False
        with open(module, 'rb') as f:
            self.guest.put('/tmp/vmi_hide.ko', f.read())
        self.guest.insmod_file('/tmp/vmi_hide.ko', 'hide_self=1 hide_pid=%d' % self.miner)
        print('      guest: rootkit module vmi_hide loaded; it hides itself and process '
              '%d (crypto-miner) from the kernel\'s lists' % self.miner)
        return True

    def report(self):
        ok = all(good for good, _ in self.checks)
        print('\nReport: %d of %d checks passed.' % (sum(g for g, _ in self.checks),
                                                     len(self.checks)))
        for good, text in self.checks:
            print('  %s %s' % ('PASS' if good else 'FAIL', text))
        if self.workdir:
            print('The API, the listener and the agent ran in this process; their database '
                  'and log are in %s.' % self.workdir)
        else:
            print('The API, the listener and the agent ran in this process, in a temporary '
                  'directory now removed (--workdir DIR keeps the database and the log).')
        return 0 if ok else 1


def _get(row, key):
    """A field of a CLI list row (cliff's JSON uses the column titles)."""
    for name, value in row.items():
        if name.lower().replace(' ', '_') == key:
            return value
    return None


def _instance_known(url, uuid):
    """Whether the API knows where the instance runs (from the agent's heartbeat)."""
    status, _ = api_call(url, 'GET', '/v1/instances/%s/runs' % uuid)
    return status == 200


def _records(url, run_id, probe):
    status, body = api_call(url, 'GET', '/v1/runs/%s' % run_id)
    return [r for result in body['run']['results'] if result['probe'] == probe
            for r in result['records']]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--transport-url', default=MEMORY_URL,
                        help='oslo.messaging URL (default: in-process; e.g. '
                             'rabbit://guest:guest@127.0.0.1:5672/)')
    parser.add_argument('--workdir', metavar='DIR',
                        help='keep the database (SQLite), the log and the agent\'s state '
                             'here (default: a temporary directory, removed at the end)')
    args = parser.parse_args(argv)
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    return Demo(args.transport_url, args.workdir).run()


if __name__ == '__main__':
    sys.exit(main())
