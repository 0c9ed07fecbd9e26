"""`python -m edgecc ...` runs the edgecc command line."""
import sys

from .cli import main

sys.exit(main())
