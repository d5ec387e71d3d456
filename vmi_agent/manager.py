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

"""The agent's RPC endpoint, and what it coordinates: guests, policies, triggers, runs.

``AgentManager`` serves the agent RPC API (``nova_vmi.rpc.agent``).  Every trigger
(an RPC request, the policy's timer, the guest itself) becomes a ``Job`` for the
``RunQueue``; a pool thread hands it to the ``Introspector``.  The guest inventory is
refreshed from the driver on a timer, and the trigger sources follow it.
"""

import logging
import os
import threading

import oslo_messaging as messaging
import stevedore

from nova_vmi.objects import notification as payloads
from nova_vmi.objects import policy as policy_obj
from nova_vmi import rpc
from vmi_agent.drivers.base import DriverError
from vmi_agent.guests import GuestState
from vmi_agent.introspection import Introspector
from vmi_agent.policies import PolicyStore
from vmi_agent.runqueue import Job, RunQueue
from vmi_agent.triggers.periodic import PeriodicTrigger
from vmi_agent.triggers.ratelimit import TokenBucket

LOG = logging.getLogger(__name__)

TRIGGER_NAMESPACE = 'vmi_agent.triggers'
VERSION = '1.0'


class AgentManager:
    """The ``vmi-agent`` RPC endpoint (API version 1.0) and the agent's coordinator."""

    target = messaging.Target(version=rpc.RPC_API_VERSION)

    def __init__(self, conf, driver, notifier):
        self.conf = conf
        self.driver = driver
        self.notifier = notifier
        self.host = conf.host
        agent = conf.agent
        state_dir = agent.state_dir
        self.policies = PolicyStore(os.path.join(state_dir, 'policies.json'),
                                    self._default_policy)
        self.introspector = Introspector(
            driver, notifier, self.host, agent.probe_timeout, agent.live_retries,
            agent.profile_dir or os.path.join(state_dir, 'profiles'),
            os.path.join(state_dir, 'probes'))
        self.runs = RunQueue(self._execute, agent.max_concurrent_runs,
                             agent.max_queued_runs)
        self.periodic = PeriodicTrigger(self._fire)
        self.sources = self._load_sources()
        self._lock = threading.Lock()
        self._guests = {}

    def _default_policy(self):
        policy = policy_obj.VMIPolicy.default(self.conf.agent.default_probes)
        policy.consistency = self.conf.agent.default_consistency
        return policy

    def _load_sources(self):
        """A trigger source per guest-trigger kind the driver offers."""
        kinds = [c.split(':', 1)[1] for c in self.driver.capabilities
                 if c.startswith('trigger:')]
        sources = {}
        for kind in kinds:
            try:
                ext = stevedore.DriverManager(TRIGGER_NAMESPACE, kind,
                                              invoke_on_load=True,
                                              invoke_args=(self._fire,))
            except stevedore.exception.NoMatches:
                LOG.debug('no trigger source for %s guest triggers', kind)
                continue
            sources[kind] = ext.driver
        return sources

    # -- life cycle ---------------------------------------------------------------------
    def start(self):
        self.periodic.start()
        for source in self.sources.values():
            source.start()
        self.refresh_guests()

    def stop(self):
        self.periodic.stop()
        for source in self.sources.values():
            source.stop()
        self.runs.stop()
        with self._lock:
            guests, self._guests = list(self._guests.values()), {}
        for guest in guests:
            with guest.lock:
                guest.close()

    # -- RPC API 1.0 --------------------------------------------------------------------
    def introspect(self, context, run):
        """Start ``run`` (a ``VMIRunRequest``); its outcome comes as notifications."""
        job = Job(instance_uuid=run.instance_uuid, trigger=run.trigger, run_id=run.run_id,
                  probes=list(run.probes) or None, consistency=run.consistency,
                  detail='requested')
        refusal = self._refusal(job)
        if refusal:
            self._refuse(job, refusal)
        elif not self.runs.submit(job):
            self._refuse(job, '%d runs already wait for this instance'
                         % self.conf.agent.max_queued_runs)

    def set_policy(self, context, instance_uuid, policy):
        """Give an instance a policy (None: the default) and apply its triggers now."""
        if policy is not None:
            try:
                policy.validate()
            except ValueError as exc:
                LOG.warning('refusing the policy of %s: %s', instance_uuid, exc)
                return
        self.policies.set(instance_uuid, policy)
        with self._lock:
            guest = self._guests.get(instance_uuid)
        if guest is not None:
            self._apply_policy(guest)

    def list_guests(self, context):
        """The guests this agent sees: a list of ``VMIGuestPayload``."""
        with self._lock:
            infos = [g.info for g in self._guests.values()]
        return [_guest_payload(info) for info in sorted(infos, key=lambda i: i.uuid)]

    def ping(self, context):
        return {'host': self.host, 'driver': self.driver.name, 'version': VERSION}

    # -- triggers -----------------------------------------------------------------------
    def _fire(self, instance_uuid, trigger, detail):
        """Trigger sources call this; it applies the policy and queues a run."""
        job = Job(instance_uuid=instance_uuid, trigger=trigger, detail=detail)
        with self._lock:
            guest = self._guests.get(instance_uuid)
        if guest is None:
            LOG.debug('%s trigger for unknown guest %s ignored', trigger, instance_uuid)
            return
        policy = self.policies.get(instance_uuid)
        if trigger == 'guest':
            if not policy.guest:
                LOG.debug('guest trigger of %s ignored: its policy has none', instance_uuid)
                return
            if not guest.bucket.allow():
                LOG.debug('guest trigger of %s over its rate of %s/s', instance_uuid,
                          policy.guest_trigger_rate)
                return
        self.runs.submit(job)

    def _known(self, instance_uuid):
        with self._lock:
            return instance_uuid in self._guests

    def _refusal(self, job):
        if not self._known(job.instance_uuid):
            # A guest started since the last refresh is asked about at once: look again.
            self.refresh_guests()
        if not self._known(job.instance_uuid):
            return 'instance %s does not run on host %s' % (job.instance_uuid, self.host)
        if not self.policies.get(job.instance_uuid).on_demand:
            return "on-demand runs are off in the instance's policy"
        return None

    def _refuse(self, job, reason):
        LOG.info('run %s on %s refused: %s', job.run_id, job.instance_uuid, reason)
        policy = self.policies.get(job.instance_uuid)
        self.introspector.refuse(job, policy, reason)

    def _execute(self, job):
        with self._lock:
            guest = self._guests.get(job.instance_uuid)
        policy = self.policies.get(job.instance_uuid)
        if guest is None:
            self.introspector.refuse(job, policy, 'the instance left host %s before its '
                                     'run started' % self.host)
            return
        self.introspector.run(guest, job, policy)

    # -- guests -------------------------------------------------------------------------
    def refresh_guests(self):
        """Follow the guests the driver sees: watch new ones, release gone ones."""
        try:
            infos = {info.uuid: info for info in self.driver.list_guests()}
        except DriverError as exc:
            LOG.warning('cannot list guests: %s', exc)
            return
        with self._lock:
            gone = [g for u, g in self._guests.items() if infos.get(u) != g.info]
            for guest in gone:
                del self._guests[guest.info.uuid]
            new = [GuestState(info, TokenBucket(1.0)) for u, info in infos.items()
                   if u not in self._guests]
            for guest in new:
                self._guests[guest.info.uuid] = guest
        for guest in gone:
            LOG.info('guest %s (%s) is gone', guest.info.uuid, guest.info.name)
            self._stop_triggers(guest.info.uuid)
            for job in self.runs.forget(guest.info.uuid):
                if job.is_request:
                    self.introspector.refuse(job, self.policies.get(job.instance_uuid),
                                             'the instance left host %s' % self.host)
            with guest.lock:
                guest.close()
        for guest in new:
            LOG.info('guest %s (%s) found', guest.info.uuid, guest.info.name)
            self._apply_policy(guest)

    def _apply_policy(self, guest):
        uuid = guest.info.uuid
        policy = self.policies.get(uuid)
        guest.bucket.rate = policy.guest_trigger_rate
        if policy.periodic_seconds:
            self.periodic.set(uuid, policy.periodic_seconds)
        else:
            self.periodic.remove(uuid)
        for kind, source in self.sources.items():
            if policy.guest and guest.info.trigger_address(kind):
                source.watch(guest.info)
            else:
                source.unwatch(uuid)

    def _stop_triggers(self, instance_uuid):
        self.periodic.remove(instance_uuid)
        for source in self.sources.values():
            source.unwatch(instance_uuid)

    # -- heartbeat ----------------------------------------------------------------------
    def heartbeat(self):
        """Publish ``vmi.agent.heartbeat``."""
        self.notifier.emit(payloads.HEARTBEAT, payloads.VMIHeartbeatPayload(
            host=self.host, driver=self.driver.name,
            capabilities=list(self.driver.capabilities),
            interval=self.conf.agent.heartbeat_interval, version=VERSION,
            guests=self.list_guests(None)))


def _guest_payload(info):
    return payloads.VMIGuestPayload(uuid=info.uuid, name=info.name,
                                    triggers=list(info.trigger_kinds))
