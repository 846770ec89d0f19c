import sys

from robustseg.cli.main import main

sys.exit(main())
