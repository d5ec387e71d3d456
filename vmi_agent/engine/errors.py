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

"""Errors raised by the engine.

Guest memory is attacker-controlled, so most of these describe guest data that does not
make sense.  Every one of them is a :class:`VMIError`; a probe that meets one reports it
as its own error and the other probes still run.
"""


class VMIError(Exception):
    """Base class of every error the engine raises on purpose."""


class MemoryAccessError(VMIError):
    """A guest-physical address is not backed by the memory source."""

    def __init__(self, paddr, size, reason='not backed by guest RAM'):
        self.paddr = paddr
        self.size = size
        super().__init__('cannot read %d bytes at physical 0x%x: %s'
                         % (size, paddr, reason))


class TranslationError(VMIError):
    """A virtual address does not translate (non-canonical, not present, outside RAM)."""

    def __init__(self, vaddr, reason):
        self.vaddr = vaddr
        super().__init__('cannot translate 0x%x: %s' % (vaddr, reason))


class MemoryFormatError(VMIError):
    """A memory image file is unreadable or not of the format asked for."""


class ProfileError(VMIError):
    """The kernel could not be identified, or its types or symbols are missing."""


class GuestDataError(VMIError):
    """A guest structure is corrupt: a cycle, a wild pointer, a garbage count."""


class Interrupted(VMIError):
    """The caller stopped the reads: a probe ran past its time limit."""
