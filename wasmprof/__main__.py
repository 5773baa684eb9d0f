import sys

from wasmprof.cli import main

sys.exit(main())
