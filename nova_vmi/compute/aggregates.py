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

"""VMI aggregates kept true to the live agents' heartbeats (``nova-vmi-manage aggregate sync``).

VMIFilter trusts aggregate metadata, and aggregate metadata belongs to the aggregate,
not to each host.  So the hosts of live agents are grouped by the guest-trigger kinds
they offer, and each group is one aggregate: ``<prefix>`` for agents without guest
triggers, ``<prefix>-debugcon``, ``<prefix>-rdtsc-vmfunc`` and so on, each with
``vmi_enabled=true``, ``vmi_triggers`` (the kinds plus ``guest``) and
``vmi_managed_by=<prefix>``.  A host whose agent stopped sending heartbeats, or now
offers other kinds, leaves the aggregate it was in: new VMI requests go elsewhere;
its instances stay where they are.  Aggregates are never deleted.

The plan (what to change) is computed from plain dicts; :class:`NovaAggregates` applies
it through the Compute API with ``[nova]``'s keystoneauth1 service credentials.
"""

import datetime

from keystoneauth1 import exceptions as ks_exceptions

from nova_vmi.compute import nova as nova_client
from nova_vmi.conf import nova as nova_conf
from nova_vmi import context as vmi_context
from nova_vmi.db import api as db_api
from nova_vmi import heartbeats

#: Guest-trigger capabilities are ``trigger:<kind>``; kinds agents offer.
TRIGGER_PREFIX = 'trigger:'
#: Aggregate metadata (the vocabulary of nova_vmi.scheduler).
ENABLED = 'vmi_enabled'
TRIGGERS = 'vmi_triggers'
GUEST = 'guest'
#: Marks the aggregates a sync owns (value: its prefix).
MANAGED_BY = 'vmi_managed_by'
#: Longest kind name kept from a heartbeat; anything else is not a kind.
_MAX_KIND = 32


def trigger_kinds(capabilities):
    """The guest-trigger kinds in an agent's ``capabilities``, sorted, deduplicated."""
    kinds = set()
    for capability in capabilities or ():
        if not isinstance(capability, str) or not capability.startswith(TRIGGER_PREFIX):
            continue
        kind = capability[len(TRIGGER_PREFIX):].strip().lower()
        if kind and kind != GUEST and len(kind) <= _MAX_KIND and kind.isalnum():
            kinds.add(kind)
    return tuple(sorted(kinds))


def aggregate_name(prefix, kinds):
    return '-'.join((prefix,) + tuple(kinds))


def aggregate_metadata(prefix, kinds):
    """The metadata of the aggregate for ``kinds`` (None deletes a key in Nova)."""
    return {ENABLED: 'true',
            TRIGGERS: ','.join(tuple(kinds) + (GUEST,)) if kinds else None,
            MANAGED_BY: prefix}


def desired_aggregates(agents, prefix, intervals, now=None):
    """``{name: {'hosts': set, 'metadata': dict}}`` for the agents alive at ``now``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    wanted = {}
    for agent in agents:
        if not heartbeats.is_alive(agent, now, intervals):
            continue
        kinds = trigger_kinds(agent.get('capabilities'))
        group = wanted.setdefault(aggregate_name(prefix, kinds), {
            'hosts': set(), 'metadata': aggregate_metadata(prefix, kinds)})
        group['hosts'].add(agent['host'])
    return wanted


def _metadata_differs(current, wanted):
    return any(current.get(key) != value for key, value in wanted.items())


def plan(wanted, existing, prefix):
    """The changes that make Nova's ``existing`` aggregates (dicts) match ``wanted``.

    A list of ``(action, aggregate name, argument)``: ``create`` (None), ``set_metadata``
    (a dict), ``add_host`` and ``remove_host`` (a host).  Aggregates the sync owns
    (``vmi_managed_by=<prefix>``) but no longer wants lose their hosts.
    """
    by_name = {agg['name']: agg for agg in existing}
    changes = []
    for name in sorted(wanted):
        group = wanted[name]
        current = by_name.get(name)
        if current is None:
            changes.append(('create', name, None))
            current = {'hosts': [], 'metadata': {}}
        if _metadata_differs(current.get('metadata') or {}, group['metadata']):
            changes.append(('set_metadata', name, group['metadata']))
        have = set(current.get('hosts') or ())
        changes += [('add_host', name, host) for host in sorted(group['hosts'] - have)]
        changes += [('remove_host', name, host) for host in sorted(have - group['hosts'])]
    for agg in sorted(existing, key=lambda agg: agg['name']):
        managed = (agg.get('metadata') or {}).get(MANAGED_BY) == prefix
        if managed and agg['name'] not in wanted:
            changes += [('remove_host', agg['name'], host)
                        for host in sorted(agg.get('hosts') or ())]
    return changes


class NovaError(Exception):
    """The Compute API refused one aggregate change."""


class SyncIncomplete(Exception):
    """Nova refused some changes; the others were made."""


class NovaAggregates:
    """Host aggregates through the Compute API (``/os-aggregates``)."""

    def __init__(self, adapter):
        self.adapter = adapter

    def _request(self, method, url, body=None):
        try:
            resp = self.adapter.request(url, method, json=body, raise_exc=False)
        except ks_exceptions.ClientException as exc:
            raise nova_client.NovaUnavailable('Nova could not be reached: %s' % exc) from exc
        if resp.status_code >= 500:
            raise nova_client.NovaUnavailable('Nova answered %s %s with HTTP %d'
                                              % (method, url, resp.status_code))
        if resp.status_code >= 400:
            raise NovaError('Nova refused %s %s: HTTP %d %s'
                            % (method, url, resp.status_code, _fault(resp)))
        try:
            return resp.json()
        except ValueError as exc:
            raise nova_client.NovaUnavailable('Nova sent an unreadable answer to %s %s: %s'
                                              % (method, url, exc)) from exc

    def list(self):
        return self._request('GET', '/os-aggregates')['aggregates']

    def create(self, name):
        return self._request('POST', '/os-aggregates',
                             {'aggregate': {'name': name}})['aggregate']

    def action(self, aggregate_id, action, argument):
        body = {'set_metadata': {'metadata': argument}} if action == 'set_metadata' else {
            action: {'host': argument}}
        return self._request('POST', '/os-aggregates/%s/action' % aggregate_id,
                             body)['aggregate']


def _fault(resp):
    """The message of a Nova error body, bounded."""
    try:
        body = resp.json()
        message = next(iter(body.values())).get('message', '')
    except (ValueError, AttributeError, StopIteration, TypeError):
        message = resp.text
    return str(message).strip()[:200]


def apply(changes, aggregates, existing):
    """Make ``changes`` through ``aggregates`` (a NovaAggregates).

    Returns ``(done, failed)``: lines saying what changed, and what Nova refused (a host
    Nova does not know, say); one refusal does not stop the others.
    """
    ids = {agg['name']: agg['id'] for agg in existing}
    done, failed = [], []
    for action, name, argument in changes:
        try:
            if action == 'create':
                ids[name] = aggregates.create(name)['id']
            elif name not in ids:
                raise NovaError('aggregate %s was not created' % name)
            else:
                aggregates.action(ids[name], action, argument)
        except NovaError as exc:
            failed.append('%s: %s' % (describe((action, name, argument)), exc))
            continue
        done.append(describe((action, name, argument)))
    return done, failed


def describe(change):
    action, name, argument = change
    if action == 'create':
        return 'create aggregate %s' % name
    if action == 'set_metadata':
        shown = ', '.join('%s=%s' % (key, '(unset)' if value is None else value)
                          for key, value in sorted(argument.items()))
        return 'set metadata of %s: %s' % (name, shown)
    verb = 'add host %s to' if action == 'add_host' else 'remove host %s from'
    return '%s %s' % (verb % argument, name)


def sync(conf, prefix, dry_run=False, adapter=None):
    """Plan and (unless ``dry_run``) make the changes; the lines saying what changed.

    ``conf`` has ``[database]``, ``[api]`` and ``[nova]``; ``adapter`` (a keystoneauth1
    Adapter to the Compute API) defaults to ``[nova]``'s.  Raises SyncIncomplete, after
    making every other change, when Nova refused some.
    """
    if adapter is None and not nova_conf.is_configured(conf):
        raise ValueError('[nova] auth_type is not set: the sync needs service credentials '
                         'that may change host aggregates (an admin)')
    db_api.configure(conf)
    try:
        agents = db_api.agent_list(vmi_context.get_admin_context())
    finally:
        db_api.dispose()
    aggregates = NovaAggregates(adapter or nova_client.NovaClient(conf).adapter())
    existing = aggregates.list()
    wanted = desired_aggregates(agents, prefix, conf.api.agent_down_intervals)
    changes = plan(wanted, existing, prefix)
    if dry_run:
        return ['would %s' % describe(change) for change in changes]
    done, failed = apply(changes, aggregates, existing)
    if failed:
        raise SyncIncomplete('%d of %d change(s) refused: %s'
                             % (len(failed), len(changes), '; '.join(failed)))
    return done
