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

"""nova-vmi-manage on SQLite: its commands, and that a failure is one line on stderr."""

import datetime

from oslo_utils import uuidutils
import pytest

from nova_vmi import context
from nova_vmi.cmd import manage
from nova_vmi.db import api as db_api
from nova_vmi.db import models
from tests.unit.db import api_cases


def _config_file(tmp_path, connection):
    path = tmp_path / 'nova-vmi.conf'
    path.write_text('[database]\nconnection = %s\n' % connection)
    return str(path)


@pytest.fixture
def config_file(tmp_path):
    return _config_file(tmp_path, 'sqlite:///%s' % (tmp_path / 'nova-vmi.sqlite'))


def _manage(capsys, *argv):
    status = manage.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_db_sync_then_db_version_prints_the_revision(config_file, capsys):
    assert _manage(capsys, '--config-file', config_file, 'db', 'version')[1].startswith(
        'None'), 'an empty database has no revision'
    status, out, err = _manage(capsys, '--config-file', config_file, 'db', 'sync')
    assert (status, err) == (0, ''), 'db sync should succeed quietly on stderr'
    status, out, err = _manage(capsys, '--config-file', config_file, 'db', 'version')
    assert (status, out) == (0, '0001\n')


def test_db_purge_deletes_runs_older_than_the_days_given(config_file, capsys, tmp_path):
    _manage(capsys, '--config-file', config_file, 'db', 'sync')
    conf = api_cases.make_conf('sqlite:///%s' % (tmp_path / 'nova-vmi.sqlite'))
    db_api.configure(conf)
    ctx = context.get_admin_context()
    old = db_api.run_create(ctx, {'instance_uuid': uuidutils.generate_uuid(),
                                  'probes': ['pslist']})
    new = db_api.run_create(ctx, {'instance_uuid': uuidutils.generate_uuid(),
                                  'probes': ['pslist']})
    ten_days_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
    api_cases.set_created_at(models.Run, old['id'], ten_days_ago)
    status, out, err = _manage(capsys, '--config-file', config_file,
                               'db', 'purge', '--before-days', '7')
    assert (status, err) == (0, '') and out.startswith('purged 1 run(s)'), out + err
    db_api.configure(conf)
    assert [r['id'] for r in db_api.run_list(ctx)] == [new['id']], 'the new run stays'
    db_api.dispose()


def test_purge_cutoff_from_a_date_without_offset_is_utc():
    when = manage._utc_time('2026-11-01')
    assert manage.purge_cutoff(None, when) == datetime.datetime(
        2026, 11, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize('connection', [
    'nosuchdialect://host/db',
    'sqlite:////nonexistent-dir/nova-vmi.sqlite',
    'not a url',
])
def test_a_bad_connection_is_one_line_on_stderr(tmp_path, capsys, connection):
    config_file = _config_file(tmp_path, connection)
    status, out, err = _manage(capsys, '--config-file', config_file, 'db', 'sync')
    assert status == 1, 'a failed command exits 1'
    assert err.startswith('nova-vmi-manage: error: ') and err.count('\n') == 1, (
        'expected one error line, got %r' % err)
    assert 'Traceback' not in out + err


def test_a_missing_config_file_is_one_line_and_status_2(tmp_path, capsys):
    status, out, err = _manage(capsys, '--config-file', str(tmp_path / 'nope.conf'),
                               'db', 'sync')
    assert status == 2 and err.count('\n') == 1, err


def test_purge_without_a_cutoff_is_a_usage_error(config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        manage.main(['--config-file', config_file, 'db', 'purge'])
    assert exit_info.value.code == 2, 'argparse reports a usage error with status 2'
