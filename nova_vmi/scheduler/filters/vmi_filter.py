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

"""VMIFilter: instances that ask for introspection land only where an agent can do it.

A request asks for introspection through the flavor extra spec ``vmi:enabled=true``,
the image property ``vmi_enabled=true`` or the scheduler hint ``vmi=true``; the flavor
extra spec ``vmi:trigger=<kind>`` (which implies ``vmi:enabled``) also asks for a guest
trigger (``guest`` for any kind).  A host qualifies through the metadata of its
aggregates: ``vmi_enabled=true`` on at least one and no other value on any, and for a
trigger, ``vmi_triggers`` (the union over its aggregates) offering it.  A request that
asks for nothing passes every host.

This module runs inside nova-scheduler: it imports Nova and the standard library only,
plus the vocabulary of its own parent package (``nova_vmi.scheduler``, itself
standard-library only).
"""

import logging

from nova import context as nova_context
from nova import exception as nova_exception
from nova.image import glance
from nova.scheduler import filters
from nova.scheduler.filters import utils
from nova.scheduler import utils as scheduler_utils

from nova_vmi import scheduler as vocab

LOG = logging.getLogger(__name__)


class Requirement:
    """What one request asks of a host: introspection, and maybe a trigger kind.

    ``error`` set means the request could not be read (its image's properties): no host
    can be shown to satisfy it.
    """

    def __init__(self, enabled=False, trigger=None, reason='', error=None):
        self.enabled = enabled or trigger is not None
        self.trigger = trigger
        self.reason = reason
        self.error = error


NOTHING = Requirement()


def _flavor_spec(spec_obj, key):
    flavor = spec_obj.flavor if 'flavor' in spec_obj else None
    if flavor is None or 'extra_specs' not in flavor or not flavor.extra_specs:
        return None
    return flavor.extra_specs.get(key)


def _image_id(spec_obj):
    image = spec_obj.image if 'image' in spec_obj else None
    if image is None or 'id' not in image:
        return None  # volume-backed: no image to read
    return image.id


def _image_asks(spec_obj):
    """Whether the request's image has ``vmi_enabled=true`` (one Glance GET).

    Nova keeps only the image properties it knows in the request spec, so ours are read
    from Glance.  An image Glance no longer has (a move of an instance whose image was
    deleted) asks for nothing; any other failure is raised.
    """
    image_id = _image_id(spec_obj)
    if image_id is None:
        return False
    context = getattr(spec_obj, '_context', None) or nova_context.get_admin_context()
    try:
        image = glance.API().get(context, image_id)
    except nova_exception.ImageNotFound:
        LOG.debug('VMIFilter: image %s is gone; it asks for no introspection', image_id)
        return False
    properties = image.get('properties') or {}
    return vocab.parse_bool(properties.get(vocab.IMAGE_ENABLED, False)) is True


def requirement(spec_obj):
    """The :class:`Requirement` of ``spec_obj`` (a RequestSpec)."""
    trigger = _flavor_spec(spec_obj, vocab.SPEC_TRIGGER)
    if trigger is not None:
        trigger = str(trigger).strip().lower()
        return Requirement(trigger=trigger,
                           reason='flavor %s=%s' % (vocab.SPEC_TRIGGER, trigger))
    if vocab.parse_bool(_flavor_spec(spec_obj, vocab.SPEC_ENABLED) or False):
        return Requirement(True, reason='flavor %s=true' % vocab.SPEC_ENABLED)
    hint = spec_obj.get_scheduler_hint(vocab.HINT_ENABLED)
    if isinstance(hint, list):  # given more than once: any "true" asks
        hint = any(vocab.parse_bool(value) for value in hint)
    if vocab.parse_bool(hint or False):
        return Requirement(True, reason='scheduler hint %s=true' % vocab.HINT_ENABLED)
    try:
        if _image_asks(spec_obj):
            return Requirement(True, reason='image property %s=true' % vocab.IMAGE_ENABLED)
    except Exception as exc:
        LOG.warning('VMIFilter: cannot read the properties of image %s: %s',
                    _image_id(spec_obj), exc)
        return Requirement(True, reason='image property %s' % vocab.IMAGE_ENABLED,
                           error='the image properties could not be read (%s)' % exc)
    return NOTHING


def rejection(host_state, wanted):
    """Why ``host_state`` cannot serve ``wanted``; None when it can."""
    if wanted.error:
        return wanted.error
    metadata = utils.aggregate_metadata_get_by_host(host_state)
    enabled = {vocab.parse_bool(value) for value in metadata.get(vocab.AGGREGATE_ENABLED, ())}
    if True not in enabled:
        return 'no aggregate of the host has %s=true' % vocab.AGGREGATE_ENABLED
    if enabled != {True}:
        return 'an aggregate of the host has %s other than true' % vocab.AGGREGATE_ENABLED
    if wanted.trigger is None:
        return None
    kinds = set()
    for value in metadata.get(vocab.AGGREGATE_TRIGGERS, ()):
        kinds |= vocab.split_kinds(value)
    if not vocab.offers_trigger(kinds, wanted.trigger):
        return ('its aggregates offer %s=%s, not %s'
                % (vocab.AGGREGATE_TRIGGERS, ','.join(sorted(kinds)) or '(none)',
                   wanted.trigger))
    return None


class VMIFilter(filters.BaseHostFilter):
    """Pass only hosts an agent introspects when the request asks for introspection."""

    # The flavor, image, hints and aggregates do not change between the instances of
    # one multi-create request.
    run_filter_once_per_request = True

    # True: a rebuild keeps the host but may bring a new image, and that image may ask for
    # introspection (vmi_enabled=true).  Like ImagePropertiesFilter, this is a policy
    # check on the host's aggregates, not a usage check, so it is safe to run on rebuild:
    # a rebuild that asks for introspection on a host no agent serves fails with No
    # valid host instead of leaving an instance that asked for it uninspected.
    RUN_ON_REBUILD = True

    def filter_all(self, filter_obj_list, spec_obj):
        """Read the request once (its image may cost a Glance GET), then each host."""
        # BaseHostFilter._filter_one, bypassed here, would skip a rebuild unless
        # RUN_ON_REBUILD: keep that contract should the choice above ever change.
        if not self.RUN_ON_REBUILD and scheduler_utils.request_is_rebuild(spec_obj):
            yield from filter_obj_list
            return
        wanted = requirement(spec_obj)
        for host_state in filter_obj_list:
            if self._passes(host_state, wanted):
                yield host_state

    def host_passes(self, host_state, spec_obj):
        return self._passes(host_state, requirement(spec_obj))

    @staticmethod
    def _passes(host_state, wanted):
        if not wanted.enabled:
            return True
        reason = rejection(host_state, wanted)
        if reason is None:
            return True
        LOG.debug('VMIFilter: %s rejected: the request asks for introspection (%s) '
                  'but %s', host_state, wanted.reason, reason)
        return False
