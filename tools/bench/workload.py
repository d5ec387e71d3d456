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

"""The guest side of the overhead benchmark: a busybox workload and a guest trigger loop.

The benchmark asks what introspection costs the *guest*, so the work is counted inside the
guest: a shell loop copies a 512 KiB tmpfs file with ``dd`` and hashes the copy with
``md5sum`` (CPU- and memory-bound, a fork/exec or two per iteration, as ordinary guest
work has) and prints how many iterations it did.

The loop runs for a fixed time by the guest's clock (``/proc/uptime``), but the rate is
taken over the *host's* wall time: under TCG the guest's TSC stands still while QEMU is
stopped, so a guest that is paused ten times a second does not see the time it lost.  The
guest's own elapsed time is reported too, and the difference is the paused time.

The trigger loop is what a guest that asks for introspection runs, in the background at
about N per second while the workload runs; its cost is part of what the triggered design
costs the guest, and is counted.  Two kinds: a resident process that writes one byte to the
debug port per trigger (``tools/bench/guest/trigger-loop.c``, as a guest agent or kernel
would), and a shell loop that runs the test bed's ``vmi-trigger`` each time (a fork and an
exec per trigger, which under TCG cost the guest milliseconds).
"""

import os
import subprocess

from tools.testbed import assets as testbed_assets

#: Guest paths of the workload's files (the root file system is the initramfs: RAM).
SOURCE_FILE = '/tmp/bench.src'
COPY_FILE = '/tmp/bench.buf'
SOURCE_KIB = 512

#: Centiseconds of guest uptime: /proc/uptime always has two decimals ("123.45").
_UPTIME_CS = 'read u _ </proc/uptime; %s=$(( ${u%%.*} * 100 + 1${u#*.} - 100 ))'

PREPARE_SCRIPT = 'dd if=/dev/urandom of=%s bs=64k count=%d 2>/dev/null' % (
    SOURCE_FILE, SOURCE_KIB // 64)

#: The resident trigger (``tools/bench/guest/trigger-loop.c``) and where it goes in the guest.
TRIGGER_LOOP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'guest',
                                   'trigger-loop.c')
TRIGGER_LOOP_PATH = '/tmp/vmi-trigger-loop'
TRIGGER_LOOP_CFLAGS = ['-Os', '-Wall', '-Wextra', '-static', '-nostdlib', '-s',
                       '-fno-stack-protector', '-fno-asynchronous-unwind-tables']

_EXEC_TRIGGER = '%s --port 0x%x 0x54' % (testbed_assets.GUEST_TRIGGER_PROGRAM,
                                         testbed_assets.DEBUGCON_PORT)

_ITERATION = ('dd if=%s of=%s bs=64k 2>/dev/null && md5sum %s >/dev/null'
              % (SOURCE_FILE, COPY_FILE, COPY_FILE))


class WorkloadOutputError(ValueError):
    """The guest's workload printed something other than ``<iterations> <centiseconds>``."""


def build_trigger_loop(directory):
    """Compile ``trigger-loop.c`` (static, no libc) into ``directory``; its bytes."""
    out = os.path.join(directory, 'trigger-loop')
    built = subprocess.run(['gcc'] + TRIGGER_LOOP_CFLAGS + ['-o', out, TRIGGER_LOOP_SOURCE],
                           capture_output=True, text=True)
    if built.returncode:
        raise RuntimeError('gcc could not build %s:\n%s'
                           % (TRIGGER_LOOP_SOURCE, built.stderr[-2000:]))
    with open(out, 'rb') as f:
        return f.read()


def workload_script(seconds, trigger_hz=None, resident=True):
    """The guest shell script for one measurement: prints ``<iterations> <guest cs>``.

    With ``trigger_hz``, a background trigger loop (:func:`trigger_loop`) runs while the
    workload runs, and is killed when it ends.
    """
    if not 0 < seconds <= 600:
        raise ValueError('workload seconds must be in (0, 600], not %r' % seconds)
    lines = []
    if trigger_hz:
        lines += [trigger_loop(trigger_hz, resident) + ' &', 'tp=$!']
    lines += [
        'n=0',
        _UPTIME_CS % 't0',
        'end=$((t0 + %d))' % round(seconds * 100),
        't=$t0',
        'while [ $t -lt $end ]; do',
        '  %s || exit 1' % _ITERATION,
        '  n=$((n + 1))',
        '  ' + _UPTIME_CS % 't',
        'done',
    ]
    if trigger_hz:
        lines += ['kill $tp']
    lines += ['echo "$n $((t - t0))"']
    return '\n'.join(lines) + '\n'


def trigger_loop(hz, resident=True):
    """A command that triggers introspection about ``hz`` times a second, forever.

    ``resident``: one process that stays running (``trigger-loop``, one ``outb`` per
    trigger); else a shell loop that runs the test bed's ``vmi-trigger`` each time.
    """
    if not 0 < hz <= 1000:
        raise ValueError('trigger rate must be in (0, 1000] Hz, not %r' % hz)
    period_us = round(1e6 / hz)
    if resident:
        return '%s %d 0 </dev/null >/dev/null 2>&1' % (TRIGGER_LOOP_PATH, period_us)
    return ('( while :; do %s; usleep %d; done ) </dev/null >/dev/null 2>&1'
            % (_EXEC_TRIGGER, period_us))


def trigger_cost_script(count, resident=True):
    """``count`` triggers back to back, timed by the guest; prints ``<count> <guest cs>``.

    What one trigger costs the guest, measured with nobody pausing it: ``resident``, one
    ``outb`` of ``trigger-loop``; else a ``vmi-trigger`` run (fork, exec, ``outb``) and
    the shell loop's ``usleep``.
    """
    if not 0 < count <= 100000:
        raise ValueError('trigger count must be in (0, 100000], not %r' % count)
    if resident:
        body = ['%s 0 %d || exit 1' % (TRIGGER_LOOP_PATH, count), 'i=%d' % count]
    else:
        body = ['i=0', 'while [ $i -lt %d ]; do' % count,
                '  %s; usleep 1' % _EXEC_TRIGGER, '  i=$((i + 1))', 'done']
    return '\n'.join([_UPTIME_CS % 't0'] + body
                     + [_UPTIME_CS % 't', 'echo "$i $((t - t0))"']) + '\n'


def parse_workload_output(text):
    """``(iterations, guest_seconds)`` from the workload's output; WorkloadOutputError."""
    fields = text.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        raise WorkloadOutputError('expected "<iterations> <centiseconds>" from the guest '
                                  'workload, got %r' % text[:200])
    iterations, centiseconds = int(fields[0]), int(fields[1])
    if centiseconds <= 0:
        raise WorkloadOutputError('the guest workload ran for %d cs' % centiseconds)
    return iterations, centiseconds / 100.0
