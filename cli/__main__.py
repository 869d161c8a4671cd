"""`python -m cli`: the adaprune command line."""

import sys

from cli.main import main

sys.exit(main(sys.argv[1:]))
