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

"""vmi-inspect: people get one-line errors and exit status 2, never a traceback."""

import json

import pytest

from tests.unit.engine.fakekernel import FakeKernel
from vmi_agent.cmd import inspect


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        inspect.main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    assert err.count('\n') == 1 and err.startswith('vmi-inspect: error: ')
    assert 'Traceback' not in err
    for word in words:
        assert word in err


def test_missing_memory_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, '--memory', str(tmp_path / 'nope'), 'pslist')
    assert_one_line_error(code, err, 'nope', 'no such file')


def test_unknown_probe(capsys, tmp_path):
    (tmp_path / 'ram').write_bytes(b'\0' * 4096)
    code, _, err = run_cli(capsys, '--memory', str(tmp_path / 'ram'), 'pslist', 'bogus')
    assert_one_line_error(code, err, 'unknown probe bogus', 'pslist')


def test_missing_vmlinux(capsys, tmp_path):
    (tmp_path / 'ram').write_bytes(b'\0' * 4096)
    code, _, err = run_cli(capsys, '--memory', str(tmp_path / 'ram'), '--vmlinux',
                           str(tmp_path / 'vmlinuz'), 'pslist')
    assert_one_line_error(code, err, 'vmlinuz: no such file')


def test_image_with_no_kernel(capsys, tmp_path):
    (tmp_path / 'ram').write_bytes(bytes(range(256)) * 4096)
    code, _, err = run_cli(capsys, '--memory', str(tmp_path / 'ram'), '--profile-dir',
                           str(tmp_path / 'p'), 'pslist')
    assert_one_line_error(code, err, 'no Linux kernel found')


def test_kernel_image_that_is_not_a_kernel(capsys, tmp_path):
    (tmp_path / 'ram').write_bytes(b'\0' * 4096)
    (tmp_path / 'vmlinuz').write_bytes(b'MZ not a kernel' * 100)
    code, _, err = run_cli(capsys, '--memory', str(tmp_path / 'ram'), '--vmlinux',
                           str(tmp_path / 'vmlinuz'), '--profile-dir', str(tmp_path / 'p'),
                           'pslist')
    assert code == 2 and err.startswith('vmi-inspect: error: ') and err.count('\n') == 1


def test_usage_errors_are_one_line_too(capsys, tmp_path):
    code, _, err = run_cli(capsys, 'pslist')
    assert_one_line_error(code, err, '--memory')
    code, _, err = run_cli(capsys, '--memory', 'x', '--format', 'vmdk', 'pslist')
    assert_one_line_error(code, err, 'vmdk')


def test_report_shape(monkeypatch, capsys, tmp_path):
    """The JSON document the issue specifies, on a synthetic kernel."""
    fake = FakeKernel()
    fake.task(1, 'init')
    kernel = fake.attach(tmp_path)
    monkeypatch.setattr(inspect, 'attach', lambda *a, **k: kernel)
    path = str(tmp_path / 'ram')
    assert inspect.main(['--memory', path, '-f', 'json', 'pslist', 'modules']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['profile'] == {'release': '6.1.0-fake', 'build_id': None,
                                 'kaslr_shift': '0x2e00000'}
    assert report['probes']['pslist'] == {
        'records': [{'pid': 1, 'tgid': 1, 'ppid': 0, 'uid': 0, 'comm': 'init',
                     'kernel_thread': False}],
        'findings': [], 'error': None}
    assert report['probes']['modules']['records'] == []
    assert inspect.main(['--memory', path, 'pslist']) == 0
    table = capsys.readouterr().out
    assert 'kernel 6.1.0-fake' in table and 'init' in table
