import sys

from guard.cli.main import main

sys.exit(main())
