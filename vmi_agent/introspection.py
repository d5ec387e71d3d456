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

"""One run: make guest memory consistent, run the probes, publish what they found.

Every run publishes ``vmi.run.start`` and then either ``vmi.run.end`` (with each probe's
records or error, the findings, and the timings) followed by one ``vmi.finding`` per
finding, or ``vmi.run.error`` when the run as a whole could not be done (the guest
vanished, its memory or kernel could not be read, the consistency mode is not offered).
A probe that fails is not a failed run: its result carries the error.
"""

import contextlib
import datetime
import logging
import time

from oslo_utils import uuidutils

from nova_vmi.objects import notification as payloads
from vmi_agent.drivers.base import DriverError, GuestVanished
from vmi_agent.engine import probes as engine_probes
from vmi_agent.engine.errors import MemoryAccessError, MemoryFormatError, VMIError

LOG = logging.getLogger(__name__)

#: The prefix of a probe error caused by a list the guest was changing as we walked it.
_TORN = 'GuestDataError: '


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class RunError(Exception):
    """The run cannot be done; the message says why (for ``vmi.run.error``)."""


class Introspector:
    """Carries out jobs (``vmi_agent.runqueue.Job``) on guests for one agent."""

    def __init__(self, driver, notifier, host, probe_timeout, live_retries, profile_dir,
                 state_dir):
        self.driver = driver
        self.notifier = notifier
        self.host = host
        self.probe_timeout = probe_timeout
        self.live_retries = live_retries
        self.profile_dir = profile_dir
        self.state_dir = state_dir

    def _payload(self, job, policy):
        return payloads.VMIRunPayload(
            run_id=job.run_id or uuidutils.generate_uuid(),
            instance_uuid=job.instance_uuid, host=self.host, trigger=job.trigger,
            trigger_detail=job.detail, probes=list(job.probes or policy.probes),
            consistency=job.consistency or policy.consistency,
            coalesced=job.coalesced, triggered_at=job.triggered_at, pause_seconds=0.0,
            results=[], findings=[])

    def refuse(self, job, policy, reason):
        """Answer a job that will not run with ``vmi.run.error`` saying why."""
        self._fail(self._payload(job, policy), RunError(reason))

    def run(self, guest, job, policy):
        """Do ``job`` on ``guest`` (a ``GuestState``) under ``policy``; never raises."""
        run = self._payload(job, policy)
        self.notifier.emit(payloads.RUN_START, run)
        try:
            with guest.lock:
                self._probe(guest, run)
        except Exception as exc:
            self._fail(run, exc)
            return run
        self.notifier.emit(payloads.RUN_END, run)
        LOG.debug('run %s of %s ended %.2f ms after its trigger', run.run_id,
                  run.instance_uuid, (time.perf_counter() - job.triggered_clock) * 1000)
        for finding in run.findings:
            self.notifier.emit(payloads.FINDING, finding)
        return run

    def _probe(self, guest, run):
        unknown = sorted(set(run.probes) - set(engine_probes.available()))
        if unknown:
            raise RunError('unknown probe %s (available: %s)'
                           % (', '.join(unknown), ', '.join(engine_probes.available())))
        try:
            kernel = guest.attached_kernel(self.driver, self.profile_dir)
        except (GuestVanished, MemoryFormatError, MemoryAccessError):
            guest.close()
            raise
        run.kernel_release = kernel.release
        run.started_at = _now()
        try:
            with self._consistent(guest.handle, run):
                results, timings = self._run_probes(kernel, run)
                if results and all(r.error for r in results.values()):
                    # Nothing made sense: the guest may have rebooted (a new KASLR
                    # slot, another kernel).  Attach again and run once more.
                    guest.forget_kernel()
                    kernel = guest.attached_kernel(self.driver, self.profile_dir)
                    run.kernel_release = kernel.release
                    results, timings = self._run_probes(kernel, run)
            guest.handle.check_alive()
        except GuestVanished:
            guest.close()
            raise
        run.ended_at = _now()
        for name in run.probes:
            result = results[name]
            run.results.append(payloads.VMIProbeResultPayload(
                probe=name, records=result.records, error=result.error,
                seconds=round(timings[name], 6)))
            for f in result.findings:
                run.findings.append(payloads.VMIFindingPayload(
                    run_id=run.run_id, instance_uuid=run.instance_uuid, host=self.host,
                    probe=name, kind=f.kind, severity=f.severity, summary=f.summary,
                    evidence=f.evidence))

    @contextlib.contextmanager
    def _consistent(self, handle, run):
        """Hold the guest in the run's consistency mode; record how long it was paused.

        A snapshot may report pages the guest wrote while the probes read them (Xen's
        altp2m view detects writes; it does not stop them): that is logged.
        """
        if run.consistency == 'pause':
            hold = handle.pause()
        elif run.consistency == 'snapshot':
            hold = handle.snapshot()
        else:
            hold = contextlib.nullcontext()
        with hold as record:
            yield
        if record is not None:
            run.pause_seconds = round(record.seconds, 6)
        written = getattr(record, 'written_while_read', None)
        if written:
            LOG.warning('run %s on %s: the guest wrote %d of the pages the probes read '
                        'during the snapshot; their records may be torn', run.run_id,
                        run.instance_uuid, len(written))

    def _run_probes(self, kernel, run):
        context = {'guest_id': run.instance_uuid, 'state_dir': self.state_dir}
        results, timings = engine_probes.run_probes(kernel, run.probes, context,
                                                    self.probe_timeout)
        if run.consistency != 'live':
            return results, timings
        for _ in range(self.live_retries):
            torn = [n for n, r in results.items() if r.error and r.error.startswith(_TORN)]
            if not torn:
                break
            # A list changed under the walk: read it again rather than report a tear.
            again, more = engine_probes.run_probes(kernel, torn, context, self.probe_timeout)
            results.update(again)
            for name, seconds in more.items():
                timings[name] += seconds
        return results, timings

    def _fail(self, run, exc):
        if isinstance(exc, (RunError, DriverError, VMIError)):
            LOG.warning('run %s on %s failed: %s', run.run_id, run.instance_uuid, exc)
            message = str(exc)
        else:
            LOG.exception('run %s on %s failed', run.run_id, run.instance_uuid)
            message = 'internal error: %s' % exc
        error = payloads.VMIRunErrorPayload(
            error=message, error_type=type(exc).__name__,
            **{name: getattr(run, name) for name in payloads.VMIRunPayload.fields
               if run.obj_attr_is_set(name)})
        error.results = []
        error.findings = []
        if not error.obj_attr_is_set('ended_at') or error.ended_at is None:
            error.ended_at = _now()
        self.notifier.emit(payloads.RUN_ERROR, error)
