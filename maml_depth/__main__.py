"""``python -m maml_depth``: the same command line as ``maml-depth`` (see
:func:`maml_depth.cli.main`)."""

import sys

from maml_depth.cli import main

sys.exit(main())
