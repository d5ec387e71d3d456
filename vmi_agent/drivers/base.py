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

"""What every hypervisor driver offers the agent (stevedore namespace ``vmi_agent.drivers``).

A driver lists the guests of its host (:class:`GuestInfo`) and opens one
(:class:`GuestHandle`): the engine's view of its physical memory, kept open across runs,
plus the means to make that view consistent (``pause``, ``snapshot``) and to tell whether
the guest is still there.  The agent keeps a handle per guest and reattaches the engine
only when the handle is reopened.
"""

import contextlib
import dataclasses
import time


class DriverError(Exception):
    """A driver could not do what was asked; the message says why, for an operator."""


class GuestNotFound(DriverError):
    """No guest with that UUID on this host."""


class GuestVanished(DriverError):
    """The guest went away (destroyed, migrated, its QEMU died) while we looked at it."""


class ConsistencyNotSupported(DriverError):
    """This driver cannot give the requested consistency mode."""


@dataclasses.dataclass(frozen=True)
class GuestInfo:
    """A guest as its driver found it.

    ``uuid`` is the Nova instance UUID; ``triggers`` the guest triggers it can use, as
    ``(kind, address)`` pairs (``('debugcon', '/run/.../debugcon.sock')``,
    ``('vmfunc', '7')`` for a Xen domid): the trigger source of that kind listens there;
    ``location`` is what the driver needs to open it again (RAM file, sockets, domain
    id), opaque to everyone else.
    """

    uuid: str
    name: str = None
    triggers: tuple = ()
    location: tuple = ()

    @property
    def trigger_kinds(self):
        return tuple(kind for kind, _ in self.triggers)

    def trigger_address(self, kind):
        """Where this guest's trigger of ``kind`` is heard, or None."""
        return dict(self.triggers).get(kind)


class Pause:
    """How long the guest's vCPUs were stopped during one ``with handle.pause()``."""

    def __init__(self):
        self.seconds = 0.0


class GuestHandle:
    """An opened guest.  Subclasses set ``memory`` and implement the hooks below."""

    def __init__(self, info, memory):
        self.info = info
        #: A ``vmi_agent.engine.memory.PhysicalMemory``: the guest's RAM.
        self.memory = memory

    @contextlib.contextmanager
    def pause(self):
        """Stop the vCPUs for the body; yields a :class:`Pause` filled in on exit."""
        record = Pause()
        self._stop()
        started = time.perf_counter()
        try:
            yield record
        finally:
            try:
                self._resume()
            finally:
                record.seconds = time.perf_counter() - started

    @contextlib.contextmanager
    def snapshot(self):
        """A frozen view while the guest runs on (Xen altp2m); most drivers cannot."""
        raise ConsistencyNotSupported('%s cannot take a snapshot of a running guest'
                                      % type(self).__name__)
        yield  # pragma: no cover

    def _stop(self):
        raise ConsistencyNotSupported('%s cannot pause a guest' % type(self).__name__)

    def _resume(self):
        raise ConsistencyNotSupported('%s cannot resume a guest' % type(self).__name__)

    def check_alive(self):
        """Raise :class:`GuestVanished` when the guest is gone (call after reading)."""

    def close(self):
        """Release the memory mapping and any connection."""
        self.memory.close()


class Driver:
    """A hypervisor driver.  ``conf`` is the agent's ``oslo_config.cfg.ConfigOpts``.

    ``capabilities`` lists the consistency modes (``live``, ``pause``, ``snapshot``)
    and guest-trigger kinds (``trigger:debugcon``, ``trigger:vmfunc``) it offers; the
    heartbeat reports them so that the scheduler's aggregates can be kept true.
    """

    name = None
    capabilities = ('live',)

    def __init__(self, conf):
        self.conf = conf

    def list_guests(self):
        """The guests on this host now: a list of :class:`GuestInfo`."""
        raise NotImplementedError

    def open(self, info):
        """Open the guest ``info``: a :class:`GuestHandle`; GuestVanished if it is gone."""
        raise NotImplementedError

    def close(self):
        """Release what the driver holds for all guests (connections, libraries)."""
