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

"""Trigger-to-notification latency: the guest triggers, a listener hears ``vmi.run.end``.

Boots the test-bed guest, starts a ``vmi-agent`` process on RabbitMQ and a notification
listener, gives the guest a policy that lets it trigger, and has the guest run
``vmi-trigger --port 0x402`` in a loop (spaced so that runs do not coalesce).  For each
run it reports, from the ``vmi.run.end`` notification and the listener's clock:

* ``host_ms``: from the trigger byte reaching the agent (``triggered_at``) to the
  listener receiving ``vmi.run.end``: the host side of the path, whose targets are
  p50 <= 10 ms and p99 <= 30 ms;
* ``probes_ms``: the probes alone (``started_at`` to ``ended_at``).

Once for ``pslist`` and once for the full probe set.  Prints one JSON document (and
writes it to ``--output``).  Run with ``python -m tools.bench.trigger_latency``.
"""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import argparse
import datetime
import json
import os
import platform
import statistics
import time

from oslo_config import cfg
from oslo_utils import timeutils

from nova_vmi.objects import policy as policy_obj
from nova_vmi import rpc
from tools.testbed import assets as testbed_assets
from tools.testbed.agent import AgentProcess, RABBIT_URL
from tools.testbed.collector import NotificationCollector
from tools.testbed.guest import Guest
from vmi_agent.engine import probes

TARGETS = {'host_p50_ms': 10.0, 'host_p99_ms': 30.0}


def _percentiles(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(round(q * (len(values) - 1))))]  # noqa
    return {'n': len(values), 'p50': round(statistics.median(values), 3),
            'p99': round(pick(0.99), 3), 'max': round(values[-1], 3),
            'min': round(values[0], 3)}


def _wall(received_perf):
    """The wall-clock time of a ``time.perf_counter()`` reading taken in this process."""
    return time.time() - (time.perf_counter() - received_perf)


def measure(guest, agent, api, notes, probe_names, count, spacing):
    policy = policy_obj.VMIPolicy.default(probe_names)
    policy.guest = True
    policy.guest_trigger_rate = 1000.0
    api.set_policy({}, agent.host, guest.uuid, policy)
    # Until the agent has connected to the debug port, the guest's bytes are dropped.
    deadline = time.monotonic() + 60
    while not notes.matching('vmi.run.end', instance_uuid=guest.uuid, trigger='guest',
                             probes=probe_names):
        if time.monotonic() > deadline:
            raise RuntimeError('no guest-triggered run:\n' + agent.log_tail())
        guest.trigger()
        time.sleep(0.2)
    time.sleep(1.0)
    before = len(notes.matching('vmi.run.end', instance_uuid=guest.uuid))
    guest.run('i=0; while [ $i -lt %d ]; do %s --port 0x%x 0x54; usleep %d; '
              'i=$((i+1)); done' % (count, testbed_assets.GUEST_TRIGGER_PROGRAM,
                                    testbed_assets.DEBUGCON_PORT, int(spacing * 1e6)),
              timeout=count * (spacing + 1) + 30)
    notes.wait_for('vmi.run.end', timeout=60, count=before + count,
                   instance_uuid=guest.uuid)
    runs = notes.matching('vmi.run.end', instance_uuid=guest.uuid)[before:before + count]
    api.set_policy({}, agent.host, guest.uuid, None)
    host_ms, probes_ms, coalesced = [], [], 0
    for note in runs:
        data = note.data
        triggered = timeutils.parse_isotime(data['triggered_at']).timestamp()
        started = timeutils.parse_isotime(data['started_at']).timestamp()
        ended = timeutils.parse_isotime(data['ended_at']).timestamp()
        host_ms.append((_wall(note.received) - triggered) * 1000)
        probes_ms.append((ended - started) * 1000)
        coalesced += data['coalesced']
    return {'probes': probe_names, 'host_ms': _percentiles(host_ms),
            'probes_ms': _percentiles(probes_ms), 'coalesced_triggers': coalesced}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--flavour', default='amd64', help='test-bed kernel flavour')
    parser.add_argument('--count', type=int, default=200, help='triggers per probe set')
    parser.add_argument('--spacing', type=float, default=0.05,
                        help='seconds between the guest\'s triggers')
    parser.add_argument('--transport-url', default=RABBIT_URL)
    parser.add_argument('--output', help='also write the JSON document here')
    args = parser.parse_args(argv)

    transport = rpc.get_transport(cfg.CONF, url=args.transport_url)
    api = rpc.AgentAPI(transport, timeout=30)
    with Guest(flavour=args.flavour) as guest, \
            AgentProcess(transport_url=args.transport_url) as agent, \
            NotificationCollector(args.transport_url, agent.topic) as notes:
        agent.add_guest(guest)
        deadline = time.monotonic() + 60
        while guest.uuid not in [g.uuid for g in _guests(api, agent)]:
            if time.monotonic() > deadline:
                raise RuntimeError('the agent never saw the guest:\n' + agent.log_tail())
            time.sleep(0.3)
        results = [measure(guest, agent, api, notes, names, args.count, args.spacing)
                   for names in (['pslist'], probes.available())]
    transport.cleanup()
    report = {
        'benchmark': 'trigger_latency',
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                    'platform': platform.platform()},
        'guest': {'flavour': args.flavour, 'release': guest.release},
        'transport': args.transport_url.split('@')[-1],
        'targets': TARGETS,
        'results': results,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, 'w') as f:
            f.write(text + '\n')


def _guests(api, agent):
    try:
        return api.list_guests({}, agent.host)
    except Exception:  # MessagingTimeout while the agent starts
        return []


if __name__ == '__main__':
    main()
