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

"""What introspection costs the guest: polling (pause, read, resume) against triggered.

The paper's claim is that triggered introspection costs the guest at most 2%.  This
benchmark measures ours against the classic resident-polling design, on one boot of the
test-bed guest, with a busybox workload whose work per second the guest counts itself
(:mod:`tools.bench.workload`).  Conditions, alternated round by round:

* ``none``: no introspection (the agent runs, attached, idle);
* ``polling_<N>hz``: a host loop in this process that, N times a second, stops the vCPU
  over QMP, runs the agent's default probes with the engine, and resumes it;
* ``triggered_<N>hz``: a resident guest process triggers N times a second (one byte to
  the debug port, ``tools/bench/guest/trigger-loop.c``) and the real ``vmi-agent``
  (RabbitMQ) runs the same probes in live consistency (no pause);
* ``triggered_exec_<N>hz``: the same, but the guest runs the test bed's ``vmi-trigger``
  for each trigger (a fork and an exec, which under TCG cost milliseconds).

For each: the guest's throughput against ``none`` (median over rounds, with a bootstrap
interval, and each round against its own baseline), pause time per run, the host CPU the
introspecting side used (the polling thread; the agent's process tree), and the accounted
cost (time paused; triggers times what one costs the guest).  The same JSON document also has:
``pslist`` and full-probe latency live against paused (engine, in-process);
trigger-to-notification latency over RabbitMQ (:func:`tools.bench.trigger_latency.measure`);
and the agent's memory and CPU with ten small guests attached.

Run with ``python -m tools.bench.overhead`` (about 10 minutes on 2 cores).
"""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import argparse
import contextlib
import datetime
import json
import os
import platform
import tempfile
import threading
import time

from oslo_config import cfg
from oslo_utils import timeutils

from nova_vmi.objects import policy as policy_obj
from nova_vmi import rpc
from tools.bench import overhead_stats as stats
from tools.bench import trigger_latency
from tools.bench import workload
from tools.testbed.agent import AgentProcess, RABBIT_URL
from tools.testbed.collector import NotificationCollector
from tools.testbed.guest import Guest
from vmi_agent.drivers.qmp import QMPClient
from vmi_agent.engine.attach import attach
from vmi_agent.engine.linux.profile import default_store_path
from vmi_agent.engine.memory import open_memory
from vmi_agent.engine import probes

#: What the agent runs when a policy names no probes (``[agent] default_probes``): both
#: designs run these, so that they do the same reading.
PROBES = ['pslist', 'modules']
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


class BenchGuest(Guest):
    """The test-bed guest with a third QMP socket, for this benchmark's polling loop.

    QEMU serves one client per QMP socket; the test bed holds the first and the agent the
    second, so the polling design gets its own.
    """

    @property
    def poller_qmp_path(self):
        return self.agent_qmp_path.with_name('poller-qmp.sock')

    @property
    def qemu_pid(self):
        return self._res.proc.pid

    def qemu_command(self):
        return super().qemu_command() + [
            '-qmp', 'unix:%s,server=on,wait=off' % self.poller_qmp_path]


# -- the agent's process tree --------------------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:     # the process ended between listing and reading
        return None


def process_tree(root):
    """``root`` and its descendants (the agent's launcher and its worker)."""
    parents = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            text = _read('/proc/%s/stat' % name)
            if text:
                parents[int(name)] = stats.proc_ppid(text)
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        frontier = [pid for pid in children if pid not in tree]
        tree.update(frontier)
    return sorted(tree)


def tree_cpu_seconds(root):
    """User + system CPU seconds of ``root``'s process tree so far."""
    ticks = 0
    for pid in process_tree(root):
        text = _read('/proc/%d/stat' % pid)
        if text:
            ticks += stats.proc_cpu_ticks(text)
    return ticks / CLOCK_TICKS


def steal_seconds():
    """CPU time the hypervisor under this machine gave to others, all CPUs (``/proc/stat``).

    This machine may itself be a guest: time stolen from it slows the benchmark's guest
    without showing in any process's CPU time.
    """
    fields = (_read('/proc/stat') or 'cpu').splitlines()[0].split()
    return int(fields[8]) / CLOCK_TICKS if len(fields) > 8 else 0.0


def tree_memory_mib(root):
    """RSS (and its anonymous / shared-memory parts), PSS and private memory of a tree.

    The agent maps each guest's RAM file: the pages it has read count in its RSS as
    ``RssShmem`` without costing the host anything more; ``RssAnon`` is its own memory.
    """
    kib = {'rss': 0, 'rss_anon': 0, 'rss_shmem': 0, 'pss': 0, 'private': 0}
    status_keys = {'VmRSS': 'rss', 'RssAnon': 'rss_anon', 'RssShmem': 'rss_shmem'}
    rollup_keys = {'Pss': 'pss', 'Private_Clean': 'private', 'Private_Dirty': 'private'}
    for pid in process_tree(root):
        for name, keys in (('status', status_keys), ('smaps_rollup', rollup_keys)):
            for line in (_read('/proc/%d/%s' % (pid, name)) or '').splitlines():
                key, _, value = line.partition(':')
                if key in keys:
                    kib[keys[key]] += int(value.split()[0])
    return {name + '_mib': round(value / 1024, 1) for name, value in kib.items()}


# -- the polling design ----------------------------------------------------------------------

class Poller(threading.Thread):
    """The classic design: every 1/hz s, QMP ``stop``, run the probes, QMP ``cont``."""

    def __init__(self, qmp, kernel, hz, names=PROBES, lead=0.2):
        super().__init__(name='poller', daemon=True)
        self.qmp, self.kernel, self.period, self.names = qmp, kernel, 1.0 / hz, names
        self.lead = lead
        self.pauses, self.probe_times, self.cpu_seconds = [], [], 0.0
        self.error = None
        self._stop_event = threading.Event()

    def run(self):
        cpu_start = time.thread_time()
        try:
            # The lead lets Guest.run() check, unpaused, that the guest runs.
            due = time.monotonic() + self.lead
            while not self._stop_event.wait(max(0.0, due - time.monotonic())):
                self.poll_once()
                due = max(due + self.period, time.monotonic())
        except Exception as exc:  # reported by stop(), in the main thread
            self.error = exc
        finally:
            self.cpu_seconds = time.thread_time() - cpu_start

    def poll_once(self):
        paused = time.perf_counter()
        self.qmp.execute('stop')
        try:
            started = time.perf_counter()
            probes.run_probes(self.kernel, self.names)
            self.probe_times.append(time.perf_counter() - started)
        finally:
            self.qmp.execute('cont')
            self.pauses.append(time.perf_counter() - paused)

    def stop(self):
        self._stop_event.set()
        self.join(30)
        if self.error is not None:
            raise RuntimeError('the polling loop failed: %s' % self.error) from self.error


# -- the overhead rounds ---------------------------------------------------------------------

class OverheadBench:
    """One guest, one agent, one polling QMP client: measures each condition once per call."""

    def __init__(self, guest, agent, api, notes, kernel, qmp, seconds):
        self.guest, self.agent, self.api, self.notes = guest, agent, api, notes
        self.kernel, self.qmp, self.seconds = kernel, qmp, seconds

    def allow_triggers(self, hz_max):
        policy = policy_obj.VMIPolicy.default(PROBES)
        policy.guest = True
        policy.consistency = 'live'
        policy.guest_trigger_rate = float(max(20, 5 * hz_max))
        self.api.set_policy({}, self.agent.host, self.guest.uuid, policy)
        deadline = time.monotonic() + 60
        while not self._guest_runs():
            if time.monotonic() > deadline:
                raise RuntimeError('no guest-triggered run:\n' + self.agent.log_tail())
            self.guest.trigger()
            time.sleep(0.2)
        time.sleep(1.0)     # let the warm-up's runs finish before the first round

    def _guest_runs(self):
        return self.notes.matching('vmi.run.end', instance_uuid=self.guest.uuid,
                                   trigger='guest')

    def _workload(self, trigger_hz=None, resident=True):
        script = workload.workload_script(self.seconds, trigger_hz, resident)
        qemu_cpu, steal = tree_cpu_seconds(self.guest.qemu_pid), steal_seconds()
        start = time.perf_counter()
        out = self.guest.run(script, timeout=self.seconds * 4 + 30)
        wall = time.perf_counter() - start
        qemu_cpu = tree_cpu_seconds(self.guest.qemu_pid) - qemu_cpu
        iterations, guest_s = workload.parse_workload_output(out)
        return {'iterations': iterations, 'wall_s': wall, 'guest_s': guest_s,
                'qemu_cpu_s': qemu_cpu, 'steal_s': steal_seconds() - steal}

    def trigger_cost(self, resident, count, repeats=3):
        """What one trigger costs the guest (guest clock, median of ``repeats``)."""
        per_trigger = []
        for _ in range(repeats):
            out = self.guest.run(workload.trigger_cost_script(count, resident),
                                 timeout=count * 0.1 + 30)
            done, guest_s = workload.parse_workload_output(out)
            per_trigger.append(guest_s * 1000 / done)
            time.sleep(1.0)     # the runs those triggers started
        return {'triggers_per_repeat': count,
                'guest_ms_per_trigger': stats.spread(per_trigger, 5)}

    def measure(self, design, hz=None):
        if design == 'none':
            return self._agent_side(None)
        if design == 'polling':
            return self._polling(hz)
        if design == 'triggered':
            return self._agent_side(hz, resident=True)
        if design == 'triggered_exec':
            return self._agent_side(hz, resident=False)
        raise ValueError('unknown design %r' % design)

    def _polling(self, hz):
        poller = Poller(self.qmp, self.kernel, hz)
        poller.start()
        try:
            result = self._workload()
        finally:
            poller.stop()
        result.update(host_cpu_s=poller.cpu_seconds, runs=len(poller.pauses),
                      pause_s=poller.pauses, probes_s=poller.probe_times)
        return result

    def _agent_side(self, trigger_hz, resident=True):
        before = len(self._guest_runs())
        cpu = tree_cpu_seconds(self.agent.proc.pid)
        result = self._workload(trigger_hz, resident)
        result['host_cpu_s'] = tree_cpu_seconds(self.agent.proc.pid) - cpu
        time.sleep(0.3)     # the last trigger's notification
        runs = self._guest_runs()[before:]
        result.update(runs=len(runs), pause_s=[n.data['pause_seconds'] for n in runs],
                      probes_s=[_probe_seconds(n) for n in runs])
        return result


def _probe_seconds(note):
    data = note.data
    return (timeutils.parse_isotime(data['ended_at'])
            - timeutils.parse_isotime(data['started_at'])).total_seconds()


def conditions(rates, exec_rates=()):
    """(name, design, hz) in the order each round runs them."""
    out = [(stats.BASELINE, 'none', None)]
    for hz in rates:
        out += [(stats.condition_name('polling', hz), 'polling', hz),
                (stats.condition_name('triggered', hz), 'triggered', hz)]
    out += [(stats.condition_name('triggered_exec', hz), 'triggered_exec', hz)
            for hz in exec_rates]
    return out


def overhead_rounds(bench, order, rounds, log):
    measured = {name: [] for name, _, _ in order}
    for number in range(rounds):
        for name, design, hz in order:
            result = bench.measure(design, hz)
            measured[name].append(result)
            log('round %d %-20s %6.2f it/s  qemu %3.0f%% of a core  runs %3d  cpu %.3f s'
                % (number + 1, name, result['iterations'] / result['wall_s'],
                   100 * result['qemu_cpu_s'] / result['wall_s'], result['runs'],
                   result['host_cpu_s']))
    return measured


# -- latency, live against paused -------------------------------------------------------------

def engine_latency(kernel, qmp, runs, state_dir):
    """Probe latency in-process, live and paused: pslist, the default set, every probe."""
    out = {}
    context = {'state_dir': state_dir, 'guest_id': 'bench'}
    for label, names in (('pslist', ['pslist']), ('default', PROBES),
                         ('full', probes.available())):
        probes.run_probes(kernel, names, context)     # kernel_text takes its baseline
        live = []
        for _ in range(runs):
            start = time.perf_counter()
            probes.run_probes(kernel, names, context)
            live.append(time.perf_counter() - start)
        paused, pauses = [], []
        for _ in range(runs):
            stopped = time.perf_counter()
            qmp.execute('stop')
            try:
                start = time.perf_counter()
                probes.run_probes(kernel, names, context)
                paused.append(time.perf_counter() - start)
            finally:
                qmp.execute('cont')
                pauses.append(time.perf_counter() - stopped)
        out[label] = {'probes': names,
                      'live_ms': stats.summary([s * 1000 for s in live]),
                      'paused_probes_ms': stats.summary([s * 1000 for s in paused]),
                      'pause_ms': stats.summary([s * 1000 for s in pauses])}
    return out


# -- ten guests on one agent -----------------------------------------------------------------

def _wait_for_guests(api, agent, count, timeout=120):
    """Wait until the agent lists ``count`` guests.

    ``api`` should have a short RPC timeout: a call sent before the agent serves is lost,
    and waits out the whole timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = api.list_guests({}, agent.host)
        except Exception:  # MessagingTimeout while the agent starts
            seen = None
        if seen is not None and len(seen) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError('the agent sees %s guests, expected %d:\n%s'
                               % (seen and len(seen), count, agent.log_tail()))
        time.sleep(0.5)


def _window(agent, seconds):
    cpu = tree_cpu_seconds(agent.proc.pid)
    start = time.perf_counter()
    time.sleep(seconds)
    used = tree_cpu_seconds(agent.proc.pid) - cpu
    return {'cpu_s_per_s': round(used / (time.perf_counter() - start), 4),
            'memory': tree_memory_mib(agent.proc.pid)}


def scale(api, quick_api, transport_url, count, flavour, memory_mb, window, log):
    """The agent's memory and CPU with ``count`` small guests, idle and probed at 1 Hz each."""
    out = {'guests': count, 'flavour': flavour, 'memory_mb_each': memory_mb}
    with contextlib.ExitStack() as stack:
        agent = stack.enter_context(AgentProcess(transport_url=transport_url))
        notes = stack.enter_context(NotificationCollector(transport_url, agent.topic))
        _wait_for_guests(quick_api, agent, 0)
        out['no_guests'] = _window(agent, 3)
        guests, boots = [], []
        for _ in range(count):
            guest = stack.enter_context(Guest(flavour=flavour, memory_mb=memory_mb))
            boots.append(guest.boot_seconds)
            agent.add_guest(guest)
            guests.append(guest)
            log('scale: guest %d booted in %.1f s' % (len(guests), guest.boot_seconds))
        out['boot_s'] = stats.spread(boots, 2)
        out['release'] = guests[0].release
        _wait_for_guests(quick_api, agent, count)
        out['attached_idle'] = _window(agent, window / 2)
        policy = policy_obj.VMIPolicy.default(PROBES)
        policy.periodic_seconds = 1
        policy.consistency = 'live'
        for guest in guests:
            api.set_policy({}, agent.host, guest.uuid, policy)
        for guest in guests:    # each has attached its kernel and run once
            notes.wait_for('vmi.run.end', timeout=180, instance_uuid=guest.uuid)
        before = len(notes.matching('vmi.run.end'))
        errors = len(notes.matching('vmi.run.error'))
        busy = _window(agent, window)
        ends = notes.matching('vmi.run.end')[before:]
        busy.update(runs_per_s=round(len(ends) / window, 2),
                    run_errors=len(notes.matching('vmi.run.error')) - errors,
                    probes_ms=stats.summary([_probe_seconds(n) * 1000 for n in ends]))
        out['periodic_1s_each'] = busy
        for guest in guests:
            api.set_policy({}, agent.host, guest.uuid, None)
    return out


def latency_summary(report):
    """Medians (and p99 over RabbitMQ) of the latency sections, for the summary."""
    out = {}
    for label, figures in report['engine_latency'].items():
        out[label + '_live'] = figures['live_ms']['median']
        out[label + '_paused_probes'] = figures['paused_probes_ms']['median']
        out[label + '_pause'] = figures['pause_ms']['median']
    for result in report['trigger_to_notification']:
        label = 'pslist' if result['probes'] == ['pslist'] else 'full'
        out['trigger_to_notification_%s_p50' % label] = result['host_ms']['p50']
        out['trigger_to_notification_%s_p99' % label] = result['host_ms']['p99']
    return out


def scale_summary(figures):
    """The agent with ``figures['guests']`` guests, each probed once a second."""
    busy = figures['periodic_1s_each']
    return {'guests': figures['guests'], 'runs_per_s': busy['runs_per_s'],
            'agent_cpu_s_per_s': busy['cpu_s_per_s'],
            'agent_rss_mib': busy['memory']['rss_mib'],
            'agent_rss_anon_mib': busy['memory']['rss_anon_mib'],
            'agent_private_mib': busy['memory']['private_mib'],
            'agent_rss_anon_mib_no_guests': figures['no_guests']['memory']['rss_anon_mib']}


# -- the plot ----------------------------------------------------------------------------------

def plot(figures, path, machine):
    """Two panels: the throughput each condition cost the guest, and its accounted cost.

    Left: the cost from median rates (red: polling, blue: triggered, cyan: triggered by
    running ``vmi-trigger``), whiskers its 90% bootstrap interval.  Right: the accounted
    cost (time paused; triggers times guest time per trigger) on a log scale, which the
    rounds' noise does not blur.  Dashed: the goals.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    names = [n for n in figures if n != stats.BASELINE]
    labels = [n.replace('_', '\n') for n in names]
    colours = [_COLOURS.get(stats.design_of(n), 'tab:cyan') for n in names]
    costs = [figures[n]['cost'] * 100 for n in names]
    low = [max(0, c - figures[n]['cost_ci90'][0] * 100) for n, c in zip(names, costs)]
    high = [max(0, figures[n]['cost_ci90'][1] * 100 - c) for n, c in zip(names, costs)]
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(9.6, 3.6), dpi=100)
    left.bar(range(len(names)), costs, color=colours, yerr=[low, high], capsize=4)
    left.axhline(0, color='black', linewidth=0.6)
    left.set_title('measured: guest throughput lost (median of %d rounds,\n'
                   'whiskers: 90%% interval)'
                   % len(figures[stats.BASELINE]['rates_per_round']), fontsize=8)
    left.set_ylabel('% of the guest')
    accounted = [max(figures[n].get('accounted_cost', 0) * 100, 1e-4) for n in names]
    right.bar(range(len(names)), accounted, color=colours)
    right.set_yscale('log')
    right.set_ylim(top=max(accounted) * 20)     # room for the notes above the bars
    right.set_title('accounted: time paused, or triggers x guest time per trigger',
                    fontsize=8)
    for i, name in enumerate(names):
        pause = figures[name]['pause_ms_per_run']
        note = ('pause %.1f ms\n(p99 %.0f)' % (pause['median'], pause['p99'])
                if pause and pause['median'] else 'no pause')
        right.annotate(note, (i, accounted[i]), textcoords='offset points', xytext=(0, 3),
                       ha='center', fontsize=6)
    for ax in (left, right):
        for goal in stats.GOALS.values():
            ax.axhline(goal * 100, color='grey', linewidth=0.6, linestyle='--')
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(labels, fontsize=7)
    fig.suptitle('Introspection cost to the guest: %s, %d cores, QEMU TCG; dashed: the '
                 'goals (1%%, 2%%)' % (machine['cpu_model'], machine['cpus']), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


_COLOURS = {'polling': 'tab:red', 'triggered': 'tab:blue'}


# -- main ----------------------------------------------------------------------------------------

def machine_block():
    model = ''
    for line in (_read('/proc/cpuinfo') or '').splitlines():
        if line.startswith('model name'):
            model = line.split(':', 1)[1].strip()
            break
    return {'cpus': os.cpu_count(), 'cpu_model': model, 'python': platform.python_version(),
            'platform': platform.platform(),
            'loadavg_at_start': [round(v, 2) for v in os.getloadavg()]}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--flavour', default='amd64', help='test-bed kernel flavour')
    parser.add_argument('--memory', type=int, default=256, help='guest RAM in MiB')
    parser.add_argument('--seconds', type=float, default=5.0,
                        help='length of one measurement (guest clock)')
    parser.add_argument('--rounds', type=int, default=12)
    parser.add_argument('--rates', default='1,10', help='introspection rates N (Hz)')
    parser.add_argument('--exec-rates', default='10',
                        help='rates at which the guest also triggers by running vmi-trigger '
                        '(a fork and exec per trigger); empty: none')
    parser.add_argument('--latency-runs', type=int, default=30)
    parser.add_argument('--trigger-count', type=int, default=100,
                        help='triggers per probe set for the RabbitMQ latency')
    parser.add_argument('--scale-guests', type=int, default=10, help='0: skip')
    parser.add_argument('--scale-flavour', default='cloud-amd64')
    parser.add_argument('--scale-memory', type=int, default=128)
    parser.add_argument('--scale-window', type=float, default=20.0)
    parser.add_argument('--transport-url', default=RABBIT_URL)
    parser.add_argument('--output', help='also write the JSON document here')
    parser.add_argument('--plot', help='write the PNG plot here')
    return parser.parse_args(argv)


def _rates(text):
    rates = [float(r) for r in text.split(',') if r.strip()]
    return [int(r) if r.is_integer() else r for r in rates]


def _log(message):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


def one_guest(args, order, api, quick_api, report):
    """The overhead rounds, the latencies and the trigger costs, on one boot of one guest."""
    with tempfile.TemporaryDirectory() as tmp, \
            BenchGuest(flavour=args.flavour, memory_mb=args.memory) as guest, \
            AgentProcess(transport_url=args.transport_url) as agent, \
            NotificationCollector(args.transport_url, agent.topic) as notes, \
            open_memory(guest.ram_path, 'raw', 'q35') as memory:
        report['guest'] = {'flavour': args.flavour, 'release': guest.release,
                           'memory_mb': guest.memory_mb, 'boot_s': round(guest.boot_seconds, 2)}
        _log('guest booted in %.1f s' % guest.boot_seconds)
        qmp = QMPClient(guest.poller_qmp_path, timeout=30.0, connect_timeout=10.0)
        try:
            kernel = attach(memory, profile_dir=default_store_path())
            agent.add_guest(guest)
            _wait_for_guests(quick_api, agent, 1)
            guest.run(workload.PREPARE_SCRIPT, timeout=60)
            guest.put(workload.TRIGGER_LOOP_PATH, workload.build_trigger_loop(tmp), mode=0o755)
            bench = OverheadBench(guest, agent, api, notes, kernel, qmp, args.seconds)
            bench.allow_triggers(max(hz for _, _, hz in order if hz))
            _log('the agent runs the guest\'s triggers; %d rounds' % args.rounds)
            measured = overhead_rounds(bench, order, args.rounds, _log)
            report['trigger_cost'] = {
                'triggered': bench.trigger_cost(resident=True, count=100000),
                'triggered_exec': bench.trigger_cost(resident=False, count=100)}
            api.set_policy({}, agent.host, guest.uuid, None)
            figures = stats.add_accounted_cost(stats.condition_figures(measured), {
                design: cost['guest_ms_per_trigger']['median']
                for design, cost in report['trigger_cost'].items()})
            report['summary'] = stats.headline(figures)
            report['overhead'] = figures
            _log('engine latency, live and paused')
            report['engine_latency'] = engine_latency(
                kernel, qmp, args.latency_runs, os.path.join(tmp, 'state'))
        finally:
            qmp.close()
        _log('trigger-to-notification latency over RabbitMQ')
        report['trigger_to_notification'] = [
            trigger_latency.measure(guest, agent, api, notes, names, args.trigger_count, 0.05)
            for names in (['pslist'], probes.available())]
        report['agent_one_guest'] = {'memory': tree_memory_mib(agent.proc.pid)}
    report['summary']['latency_ms'] = latency_summary(report)


#: What the ``host_cpu_s_per_s`` figures count, per design.
HOST_CPU_SIDE = {
    'none': 'the agent process tree, attached and idle',
    'polling': 'the polling thread (time.thread_time); QEMU\'s own work for stop and cont is '
               'not counted',
    'triggered': 'the agent process tree (it publishes two notifications per run; the '
                 'RabbitMQ broker\'s work is not counted)',
    'triggered_exec': 'as triggered',
}

NOISE = (
    'One 2-core machine (itself a guest: see host_steal_s_per_s), QEMU TCG, other work '
    'possibly running. summary.baseline_noise_pct is how far the no-introspection rounds '
    'spread; cost_ci90 is a bootstrap interval of each cost over the rounds, and a goal '
    'whose interval straddles it is "not resolved" by this run. accounted_cost is the '
    'guest time each design is known to take (time paused; triggers x guest time per '
    'trigger), which the noise does not blur but which misses second-order effects.')


def main(argv=None):
    args = parse_args(argv)
    order = conditions(_rates(args.rates), _rates(args.exec_rates))
    if args.plot:
        import matplotlib  # noqa: F401  (fail now, not after the run)
    started = time.monotonic()
    report = {'benchmark': 'overhead',
              'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec='seconds'),
              'machine': machine_block(), 'goals': stats.GOALS, 'probes': PROBES,
              'workload': {'iteration': 'dd a %d KiB tmpfs file, md5sum the copy'
                           % workload.SOURCE_KIB, 'seconds': args.seconds,
                           'rounds': args.rounds, 'unit': 'iterations per host second',
                           'order': [name for name, _, _ in order]}}
    transport = rpc.get_transport(cfg.CONF, url=args.transport_url)
    api = rpc.AgentAPI(transport, timeout=30)
    quick_api = rpc.AgentAPI(transport, timeout=2)
    try:
        one_guest(args, order, api, quick_api, report)
        if args.scale_guests:
            _log('scale: %d guests' % args.scale_guests)
            report['scale'] = scale(api, quick_api, args.transport_url, args.scale_guests,
                                    args.scale_flavour, args.scale_memory,
                                    args.scale_window, _log)
            report['summary']['scale'] = scale_summary(report['scale'])
    finally:
        transport.cleanup()
    report['machine']['loadavg_at_end'] = [round(v, 2) for v in os.getloadavg()]
    report.update(elapsed_s=round(time.monotonic() - started, 1),
                  host_cpu_side=HOST_CPU_SIDE, noise=NOISE)
    first = ('benchmark', 'date', 'machine', 'guest', 'summary')
    report = {**{key: report[key] for key in first}, **report}
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, 'w') as f:
            f.write(text + '\n')
    if args.plot:
        plot(report['overhead'], args.plot, report['machine'])


if __name__ == '__main__':
    main()
