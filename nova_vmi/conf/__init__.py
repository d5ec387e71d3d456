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

"""The control plane's configuration options, one module per option group.

Each module has ``register_opts(conf)`` and ``list_opts()``.  They are imported when
asked for, not with this package: the agent uses :mod:`nova_vmi.conf.groups` and must
not pull in the control plane's libraries (oslo.db, keystoneauth1) with it.
``nova_vmi.conf:list_opts`` is what ``oslo-config-generator`` reads.
"""

import importlib

_MODULES = ('api', 'database', 'listener', 'nova')


def _modules():
    return [importlib.import_module('nova_vmi.conf.%s' % name) for name in _MODULES]


def register_all(conf):
    for module in _modules():
        module.register_opts(conf)


def list_opts():
    """``[(group, [opts])]`` of every group, for oslo-config-generator."""
    out = []
    for module in _modules():
        out.extend(module.list_opts())
    return out
