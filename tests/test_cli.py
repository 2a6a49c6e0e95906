from click.testing import CliRunner

from mammoseg import __version__
from mammoseg.cli import cli


def test_version_and_help():
    runner = CliRunner()
    assert __version__ in runner.invoke(cli, ["--version"]).output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "--verbose" in result.output and "--quiet" in result.output
