"""The `mammoseg` command line: parses options and delegates; no logic lives here.

Each module in this package holds the commands of one concern and imports the heavy
implementation (TensorFlow, Keras) only inside command bodies, so `--help` stays fast.
"""

from __future__ import annotations

import sys

import click

from mammoseg import __version__
from mammoseg.cli import analysis, bench, cluster, data, models, training
from mammoseg.cli.backend import BackendCommand
from mammoseg.core.errors import MammosegError
from mammoseg.core.runtime import configure_logging, start_backend_quietly


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mammoseg")
@click.option("-v", "--verbose", count=True, help="More output (repeatable): debug logs and TensorFlow's own.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Compare upsampling designs for mammogram segmentation: transposed convolutions with
    skips (FCN) against a dilated encoder with resize + convolution.

    \b
    Typical session:
      mammoseg synth data/synth --cases 100
      mammoseg prepare data/synth --out data/prepared
      mammoseg ablate --config experiments/demo.toml
      mammoseg compare --experiment demo --out reports/demo
    """
    configure_logging(-1 if quiet else verbose)
    asks_help = any(arg in ("-h", "--help") for arg in sys.argv[1:])
    command = cli.commands.get(ctx.invoked_subcommand or "")
    if not verbose and isinstance(command, BackendCommand) and not asks_help:
        start_backend_quietly()


for module in (data, models, training, cluster, analysis, bench):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MammosegError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
