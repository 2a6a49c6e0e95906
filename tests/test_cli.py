from click.testing import CliRunner

from mammoseg import __version__
from mammoseg.cli import cli


def test_version_and_help():
    runner = CliRunner()
    assert __version__ in runner.invoke(cli, ["--version"]).output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "--verbose" in result.output and "--quiet" in result.output


def test_commands_that_run_a_backend_say_so():
    from mammoseg.cli.backend import BackendCommand

    marked = {name for name, command in cli.commands.items() if isinstance(command, BackendCommand)}
    assert marked == {"inspect", "variants", "checkerboard", "train", "evaluate", "ablate", "visualize-layer",
                      "predict", "bench", "submit", "ablate-task", "ablate-report"}
    assert {"synth", "prepare", "compare"} <= set(cli.commands) - marked
