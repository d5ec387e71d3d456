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

"""The devstack plugin: bashate-clean, and what each phase asks devstack to do.

devstack cannot run here, so the phase test stands in for devstack's own shell functions
(iniset, run_process, get_or_create_endpoint...) with stubs that record their arguments:
the boundary is devstack's function library, and the plugin's own logic runs for real
in bash.
"""

import os
import shutil
import subprocess
import sys

import pytest

DEVSTACK_DIR = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, 'devstack')
SCRIPTS = [os.path.join(DEVSTACK_DIR, name) for name in ('plugin.sh', 'settings')]
DEVSTACK_FUNCTIONS = (
    'define_plugin enable_service setup_develop create_service_user get_or_create_service '
    'get_or_create_endpoint iniset iniadd configure_keystone_authtoken_middleware '
    'write_uwsgi_config recreate_database run_process stop_process remove_uwsgi_config '
    'echo_summary restart_service wait_for_compute sudo openstack cp rm which').split()
STUBS = '\n'.join('%s() { echo "%s $*" >> "$CALLS"; }' % (name, name)
                  for name in DEVSTACK_FUNCTIONS)
DEVSTACK_ENV = '''
DEST=/opt/stack; SERVICE_PROTOCOL=http; SERVICE_HOST=10.0.0.5; REGION_NAME=RegionOne
STACK_USER=stack; NOVA_CONF=/etc/nova/nova.conf; NOVA_CPU_CONF=/etc/nova/nova-cpu.conf
KEYSTONE_SERVICE_URI=http://10.0.0.5/identity; SERVICE_PASSWORD=secret
SERVICE_DOMAIN_NAME=Default; SERVICE_PROJECT_NAME=service; ENABLE_DEBUG_LOG_LEVEL=True
SERVICE_TIMEOUT=60
get_python_exec_prefix() { echo "$BIN"; }
get_transport_url() { echo rabbit://stackrabbit:secret@10.0.0.5:5672/; }
database_connection_url() { echo mysql+pymysql://root:secret@127.0.0.1/$1; }
is_service_enabled() { return 0; }
iniget() { echo FilterA,FilterB; }
iniget_multiline() { echo; }
hostname() { echo compute1; }
'''


def bashate():
    found = shutil.which('bashate') or os.path.join(os.path.dirname(sys.executable),
                                                    'bashate')
    return found if os.path.exists(found) else None


@pytest.mark.skipif(bashate() is None,
                    reason='bashate is not installed (pip install bashate; it is in '
                           'test-requirements.txt)')
def test_plugin_and_settings_are_bashate_clean():
    result = subprocess.run([bashate(), '-v', '-e', 'E*'] + SCRIPTS,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, 'expected no bashate errors:\n%s' % result.stdout


def run_phase(tmp_path, *phase):
    calls = tmp_path / 'calls'
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name in ('nova-vmi-manage', 'nova-vmi-listener', 'vmi-agent'):
        stub = bin_dir / name
        stub.write_text('#!/bin/sh\necho "%s $*" >> "$CALLS"\n' % name)
        stub.chmod(0o755)
    script = '\n'.join([DEVSTACK_ENV, STUBS, 'source %s' % SCRIPTS[1],
                        'source %s %s' % (SCRIPTS[0], ' '.join(phase))])
    result = subprocess.run(['bash', '-e', '-c', script], capture_output=True, text=True,
                            env={'CALLS': str(calls), 'BIN': str(bin_dir),
                                 'PATH': os.environ['PATH']},
                            timeout=60)
    assert result.returncode == 0, 'expected phase %s to succeed: %s' % (
        phase, result.stderr[-2000:])
    return calls.read_text().splitlines() if calls.exists() else []


def test_stack_install_installs_the_package(tmp_path):
    assert 'setup_develop /opt/stack/nova-vmi' in run_phase(tmp_path, 'stack', 'install')


def test_stack_post_config_creates_database_service_endpoint_and_configs(tmp_path):
    calls = run_phase(tmp_path, 'stack', 'post-config')
    expected = [
        'recreate_database nova_vmi',
        'get_or_create_service nova-vmi introspection Virtual machine introspection',
        'get_or_create_endpoint introspection RegionOne http://10.0.0.5:8779',
        'iniset /etc/nova-vmi/nova-vmi.conf database connection '
        'mysql+pymysql://root:secret@127.0.0.1/nova_vmi',
        'iniset /etc/nova-vmi/nova-vmi.conf api auth_strategy keystone',
        'write_uwsgi_config /etc/nova-vmi/nova-vmi-api-uwsgi.ini '
        'nova_vmi.api.wsgi:application  10.0.0.5:8779 nova-vmi-api',
        'iniset /etc/vmi-agent/vmi-agent.conf qemu libvirt_uri qemu:///system',
        'iniset /etc/nova/nova.conf filter_scheduler enabled_filters '
        'FilterA,FilterB,VMIFilter',
        'iniadd /etc/nova/nova.conf filter_scheduler available_filters '
        'nova_vmi.scheduler.filters.vmi_filter.VMIFilter',
        'iniset /etc/nova/nova-cpu.conf libvirt file_backed_memory 16384',
        'nova-vmi-manage --config-file /etc/nova-vmi/nova-vmi.conf db sync',
    ]
    missing = [call for call in expected if call not in calls]
    assert not missing, 'expected devstack calls missing: %s\ncalls:\n%s' % (
        missing, '\n'.join(calls))
    assert calls.index('recreate_database nova_vmi') < calls.index(
        'iniset /etc/vmi-agent/vmi-agent.conf agent driver qemu'), \
        'expected the database before the agent configuration'


def test_stack_extra_starts_services_and_creates_the_aggregate(tmp_path):
    calls = run_phase(tmp_path, 'stack', 'extra')
    started = [call.split()[1] for call in calls if call.startswith('run_process')]
    assert started == ['nova-vmi-api', 'nova-vmi-listener', 'vmi-agent'], calls
    assert any(call.startswith('run_process vmi-agent') and call.endswith(' root')
               for call in calls), 'expected the agent to run as root: %s' % calls
    assert 'openstack aggregate add host vmi compute1' in calls, calls


def test_unstack_stops_and_clean_removes(tmp_path):
    stopped = run_phase(tmp_path, 'unstack')
    assert [c for c in stopped if c.startswith('stop_process')] == [
        'stop_process nova-vmi-api', 'stop_process nova-vmi-listener',
        'stop_process vmi-agent'], stopped
    cleaned = run_phase(tmp_path, 'clean')
    assert any('rm -rf /etc/nova-vmi' in call for call in cleaned), cleaned
