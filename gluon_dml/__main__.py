"""``python -m gluon_dml COMMAND ...``: the same as the ``gluon-dml`` console script."""
import sys

from gluon_dml.commands import main

sys.exit(main())
