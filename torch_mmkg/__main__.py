import sys

from torch_mmkg.cli import main

sys.exit(main())
