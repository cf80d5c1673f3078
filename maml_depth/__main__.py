import sys

from maml_depth.cli import main

sys.exit(main())
