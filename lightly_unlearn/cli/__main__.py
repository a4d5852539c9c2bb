import sys

from lightly_unlearn.cli import main

sys.exit(main())
