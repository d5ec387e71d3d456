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

"""Struct layouts as the probes use them: byte offsets by member path.

A :class:`Layout` is the flattened view of one struct that the BTF parser produces
(``Btf.layout``), kept as plain data so that a cached profile needs no BTF at all.
"""

from vmi_agent.engine.errors import ProfileError


class Layout:
    """One struct or union: its size and its members' offsets."""

    def __init__(self, name, data, resolve):
        self.name = name
        self.size = data['size']
        self.members = data['members']
        self._resolve = resolve

    def has(self, path):
        try:
            self.offset(path)
        except ProfileError:
            return False
        return True

    def member(self, path):
        """The member description at ``path`` (``'a.b'`` walks into nested structs)."""
        head, _, rest = path.partition('.')
        try:
            member = self.members[head]
        except KeyError:
            raise ProfileError('struct %s has no member %r' % (self.name, head)) from None
        if not rest:
            return member
        inner = member.get('type')
        if member.get('kind') not in ('struct', 'union') or not inner:
            raise ProfileError('%s.%s is not a struct' % (self.name, head))
        found = dict(self._resolve(inner).member(rest))
        found['offset'] += member['offset']
        return found

    def offset(self, path):
        return self.member(path)['offset']

    def __repr__(self):
        return '<Layout %s size=%d>' % (self.name, self.size)
