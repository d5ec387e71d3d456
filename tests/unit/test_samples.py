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

"""The samples in etc/ say what the code says: regenerate them when options or rules change.

``tox -e genconfig`` and ``tox -e genpolicy`` write them.  The config samples also hold
the options of the libraries (oslo.messaging, oslo.db...), which change with their
versions; so for those only nova-vmi's own parts (the ``# From nova_vmi`` and
``# From vmi_agent`` blocks) are compared.  The policy sample is ours alone.
"""

import io
import os

from oslo_config import cfg
from oslo_config import generator
from oslo_policy import generator as policy_generator
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGENERATE = 'out of date: run tox -e genconfig / genpolicy and commit the result'


def _blocks(text, namespace):
    """``{group: the '# From <namespace>' block's text}`` of a generated sample."""
    blocks, group, current = {}, None, None
    for line in text.splitlines():
        if line.startswith('[') and line.endswith(']'):
            group, current = line, None
        elif line.startswith('# From '):
            current = line[len('# From '):] == namespace and group
            if current:
                blocks[group] = []
        elif current:
            blocks[current].append(line)
    # A block ends where the next one's '#' / '# From ...' / '#' header starts.
    return {g: '\n'.join(lines).strip().rstrip('#').strip() for g, lines in blocks.items()}


def _generate(namespace):
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    conf(['--namespace', namespace, '--wrap-width', '79'])
    out = io.StringIO()
    generator.generate(conf, output_file=out)
    return out.getvalue()


@pytest.mark.parametrize('namespace, sample', [
    ('vmi_agent', 'etc/vmi-agent/vmi-agent.conf.sample'),
    ('nova_vmi', 'etc/nova-vmi/nova-vmi.conf.sample'),
])
def test_config_sample_has_our_options_as_the_code_defines_them(namespace, sample):
    with open(os.path.join(ROOT, sample)) as f:
        committed = _blocks(f.read(), namespace)
    generated = _blocks(_generate(namespace), namespace)
    assert generated, 'the generator found no options in %s' % namespace
    assert committed == generated, '%s is %s' % (sample, REGENERATE)


def test_policy_sample_is_what_the_rules_in_code_generate(tmp_path):
    out = tmp_path / 'policy.yaml.sample'
    policy_generator.generate_sample(
        args=['--namespace', 'nova-vmi', '--output-file', str(out)], conf=cfg.ConfigOpts())
    with open(os.path.join(ROOT, 'etc/nova-vmi/policy.yaml.sample')) as f:
        assert f.read() == out.read_text(), 'etc/nova-vmi/policy.yaml.sample is ' + REGENERATE
