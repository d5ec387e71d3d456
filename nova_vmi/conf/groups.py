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

"""Registering an option group so that ConfigOpts instances do not share overrides."""

from oslo_config import cfg


def register(conf, group, opts):
    """Register ``opts`` under ``group`` (a module's ``OptGroup``) on ``conf``.

    ``conf`` gets a new OptGroup of the same name: registering the module's own object
    would share its option table, and so every ``set_override``, among all the
    ConfigOpts it was registered on (tests make many).
    """
    conf.register_group(cfg.OptGroup(group.name, title=group.title, help=group.help))
    conf.register_opts(opts, group=group.name)
