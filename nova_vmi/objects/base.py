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

"""The base class, registry and RPC serializer of nova-vmi's versioned objects."""

from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import fields as ovo_fields


class VMIObjectRegistry(ovo_base.VersionedObjectRegistry):
    """Registers nova-vmi's objects (oslo's registry is shared: our names start VMI)."""


class VMIObject(ovo_base.VersionedObject):
    """Base of every nova-vmi object: serialised as ``nova_object.*``."""

    OBJ_SERIAL_NAMESPACE = 'nova_object'
    OBJ_PROJECT_NAMESPACE = 'nova_vmi'

    def __init__(self, context=None, **kwargs):
        """Like oslo's, but fields left out take their defaults.

        So a message never carries an unset field that the other side would fail to read.
        """
        super().__init__(context, **kwargs)
        unset = [name for name, field in self.fields.items()
                 if field.default is not ovo_fields.UnspecifiedDefault
                 and not self.obj_attr_is_set(name)]
        if unset:
            self.obj_set_defaults(*unset)

    def to_primitive(self):
        """The object in its wire form (a dict of ``nova_object.*`` keys)."""
        return self.obj_to_primitive()

    @classmethod
    def from_primitive(cls, primitive):
        """The object from its wire form; ValueError when it is not one of ours."""
        if not isinstance(primitive, dict) or not isinstance(
                primitive.get('nova_object.data'), dict):
            # oslo tests ``name in data``, so a string or list "data" gave an empty object.
            raise ValueError('not a %s: not a dict with a nova_object.data dict'
                             % cls.obj_name())
        try:
            obj = cls.obj_from_primitive(primitive)
        except Exception as exc:  # oslo raises several types for a malformed primitive
            raise ValueError('not a %s: %s' % (cls.obj_name(), exc)) from exc
        if not isinstance(obj, cls):
            raise ValueError('expected a %s, got a %s' % (cls.obj_name(), obj.obj_name()))
        return obj


class VMIObjectSerializer(ovo_base.VersionedObjectSerializer):
    """Carries our objects across oslo.messaging RPC."""

    OBJ_BASE_CLASS = VMIObject
