"""The mark of a command that runs a Keras backend, set where the command is defined.

The group quiets TensorFlow's own start-up logging before such a command's body imports it (unless
-v is given); commands without the mark (synth, prepare, compare) never start one.
"""

from __future__ import annotations

import click


class BackendCommand(click.Command):
    """A command whose body runs a Keras backend."""
